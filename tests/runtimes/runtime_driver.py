"""Serve one runtime object to the conformance tests: ``python runtime_driver.py HOME``.

Run by the account the runtime needs (root for the namespace runtime, an ordinary user for the
rootless one), so the tests, which run as root, drive every runtime the same way. The runtime is the
one `make_runtime(HOME)` picks for this account, as `sandlot serve` would.

Protocol: JSON lines. First the driver writes ``{"ready": {"name", "pid", "uid"}}``; then for each
request ``{"op": METHOD, "args": [...]}`` on stdin it answers ``{"result": VALUE}`` or
``{"error": {"type", "message", "traceback"}}``. Runtime sandboxes, specs and usage travel as dicts.
``create`` takes a template name (the driver builds or finds it in HOME as this account) and
``overrides`` of the Template's fields (to make a create fail on purpose). EOF on stdin: exit.
Logging goes to stderr (the tests keep it in a file and look for errors in it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from sandlot.runtimes import make_runtime
from sandlot.runtimes.interface import RuntimeSandbox
from sandlot.runtimes.policy import Limits, SandboxSpec
from sandlot.templates import TemplateStore


def _sandbox(d: dict) -> RuntimeSandbox:
    return RuntimeSandbox(d["sandbox_id"], Path(d["socket_path"]), d["pid"], d["started_ticks"])


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def main() -> None:
    home = Path(sys.argv[1])
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = make_runtime(home)
    store = TemplateStore(home)

    def create(spec: dict, template: str, overrides: dict | None = None):
        spec = SandboxSpec(**{**spec, "limits": Limits(**spec["limits"])})
        return runtime.create(spec, dataclasses.replace(store.get(template), **(overrides or {})))

    ops = {
        "create": create,
        "adopt": runtime.adopt,
        "alive": lambda rt: runtime.alive(_sandbox(rt)),
        "kill": runtime.kill,
        "usage": runtime.usage,
        "disk_used": runtime.disk_used,
        "freeze": runtime.freeze,
        "foreground": runtime.foreground,
        "leftovers": runtime.leftovers,
        "close": runtime.close,
        "degradations": runtime.degradations,
    }
    out = sys.stdout
    out.write(json.dumps({"ready": {"name": runtime.name, "pid": os.getpid(), "uid": os.getuid()}}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"result": _plain(ops[request["op"]](*request.get("args", ())))}
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test, with its type
            answer = {"error": {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
