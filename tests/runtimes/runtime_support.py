"""The runtime conformance harness: every runtime, driven through the Runtime interface in a process
of its own account, and what each enforces, as data.

A runtime under test is a `RuntimeCase` in CASES: its name, a template it can start, the account
that runs it, and `lacks`: the capabilities (CAPABILITIES) it cannot enforce on this host, each with
the words its degradations() must use to say so. Tests ask `enforces(runtime, capability)`: where a
runtime lacks it, that call asserts the declaration and the test checks nothing else. Adding a
runtime (gVisor, Docker) is one more entry in CASES.

`RuntimeDriver` runs runtime_driver.py as the case's account and offers the Runtime methods over
its pipes, so the tests (root) drive a root runtime and an unprivileged one alike. `Box` is one
sandbox under test: its RuntimeSandbox, a client for its agent (the tests talk to it as the control
plane does) and its pid namespace, by which the host-side checks find its processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agent_support import AgentClient, Result, collect
from rootless_support import Account, remove_home
from support import link_templates

from sandlot import _exceptions
from sandlot.runtimes import cgroups
from sandlot.runtimes.interface import RuntimeSandbox
from sandlot.runtimes.cgroups import Usage
from sandlot.runtimes.policy import Limits, SandboxSpec
from sandlot.runtimes.rootless import PER_USERNS_NPROC

DRIVER = Path(__file__).with_name("runtime_driver.py")
# In the runtime's environment: no sandbox may see it (its processes' environments are checked).
CANARY = "SANDLOT_CONFORMANCE_CANARY"

# What the suite checks a runtime enforces. A runtime that cannot must name it in degradations().
CAPABILITIES = {
    "memory": "memory_mb caps the sandbox as a whole: the kernel OOM-kills inside it",
    "cpu": "cpu_count throttles the sandbox to that many cores",
    "pids": "pids caps the processes of the sandbox (a fork bomb stops there)",
    "pause": "freeze() stops every process of the sandbox until it is thawed",
    "root": "root inside the sandbox (its own user namespace's), for user='root' and sudo",
    "writable_root": "the whole root filesystem is writable (a private layer over the template)",
    "own_uid": "each sandbox runs under host uids of its own, no other sandbox's or user's",
    "disk_quota": "disk_mb caps the sandbox's writable layer as a whole",
}


@dataclass(frozen=True)
class RuntimeCase:
    name: str  # Runtime.name, as make_runtime picks it for `account`
    template: str  # a template this runtime starts (the namespace runtime's `base`, rootless' `host`)
    account: str  # "root", or "unprivileged" (rootless_support.Account)
    lacks: dict[str, str] = field(default_factory=dict)  # capability -> words in its degradations()

    def __post_init__(self):
        assert set(self.lacks) <= set(CAPABILITIES), set(self.lacks) - set(CAPABILITIES)


def _namespace_lacks() -> dict[str, str]:
    lacks = {"disk_quota": "the writable layer has no quota"}
    if cgroups.detect() is None:
        lacks.update(dict.fromkeys(("memory", "cpu", "pids", "pause"), "no cgroups"))
    return lacks


CASES = [
    RuntimeCase("namespace", "base", "root", _namespace_lacks()),
    RuntimeCase("rootless", "host", "unprivileged", {
        "memory": "memory is limited per process",
        "cpu": "CPU is not limited",
        "pause": "pause/resume is unavailable",
        "root": "no root inside sandboxes",
        "writable_root": "read-only root filesystem",
        "own_uid": "every sandbox runs as your host uid",
        "disk_quota": "without a quota",
        **({} if PER_USERNS_NPROC else {"pids": "counted over all your processes"}),
    }),
]


class DriverError(Exception):
    """The driver failed with an error outside sandlot's tree (a bug the test must show)."""


class RuntimeDriver:
    """A runtime of `case` on `home`, in a driver process run as the case's account."""

    def __init__(self, case: RuntimeCase, home: Path, argv: list[str], env: dict[str, str], log: Path):
        self.case, self.home, self.argv, self.env, self.log = case, home, argv, env, log
        self._start()

    def _start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*self.argv, str(DRIVER), str(self.home)], env=self.env, cwd="/",
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        ready = self._answer()
        assert ready["ready"]["name"] == self.case.name, ready
        self.pid, self.uid = ready["ready"]["pid"], ready["ready"]["uid"]

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise DriverError(f"the runtime driver exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}")
        return json.loads(line)

    def _call(self, op: str, *args):
        self.proc.stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._answer()
        if "error" in answer:
            error = answer["error"]
            cls = getattr(_exceptions, error["type"], None)
            if isinstance(cls, type) and issubclass(cls, _exceptions.SandlotError):
                raise cls(error["message"])
            raise DriverError(f"{error['type']}: {error['message']}\n{error['traceback']}")
        return answer["result"]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    # ---- the Runtime interface (runtimes/interface.py); a template by name ---------------------------

    def create(self, spec: SandboxSpec, template: str | None = None, **overrides) -> RuntimeSandbox:
        """`overrides`: fields of the Template to change (to make a create fail on purpose)."""
        template = template or self.case.template
        spec = dataclasses.replace(spec, template=template)
        return _sandbox(self._call("create", dataclasses.asdict(spec), template, overrides))

    def adopt(self, sandbox_id: str) -> RuntimeSandbox | None:
        found = self._call("adopt", sandbox_id)
        return _sandbox(found) if found else None

    def alive(self, rt: RuntimeSandbox) -> bool:
        return self._call("alive", {**dataclasses.asdict(rt), "socket_path": str(rt.socket_path)})

    def kill(self, sandbox_id: str) -> None:
        self._call("kill", sandbox_id)

    def usage(self, sandbox_id: str) -> Usage:
        return Usage(**self._call("usage", sandbox_id))

    def disk_used(self, sandbox_id: str) -> int:
        return self._call("disk_used", sandbox_id)

    def freeze(self, sandbox_id: str, frozen: bool) -> None:
        self._call("freeze", sandbox_id, frozen)

    def foreground(self, sandbox_id: str) -> None:
        self._call("foreground", sandbox_id)

    def leftovers(self) -> set[str]:
        return set(self._call("leftovers"))

    def close(self) -> None:
        self._call("close")

    def degradations(self) -> list[str]:
        return self._call("degradations")

    # ---- the driver process ------------------------------------------------------------------

    def stop(self) -> int:
        """close() the runtime and end its process, as a server stops."""
        if self.proc.poll() is None:
            self.close()
            self.proc.stdin.close()
            self.proc.wait(30)
        self.proc.stdout.close()
        return self.proc.returncode

    def restart(self, crash: bool = False) -> None:
        """A new runtime object on the same home, in a new process: after a clean stop, or after
        the old one was SIGKILLed (crash=True), as a server restarts."""
        if crash:
            self.proc.kill()
            self.proc.wait(30)
            self.proc.stdin.close()
            self.proc.stdout.close()
        else:
            self.stop()
        self._start()


def _sandbox(d: dict) -> RuntimeSandbox:
    return RuntimeSandbox(d["sandbox_id"], Path(d["socket_path"]), d["pid"], d["started_ticks"])


def start_driver(case: RuntimeCase, logs: Path) -> RuntimeDriver:
    """A driver for `case` on a fresh home, logging into the directory `logs`."""
    canary = {CANARY: secrets.token_hex(8)}
    if case.account == "root":
        home = Path(tempfile.mkdtemp(prefix="sandlot-conformance-"))
        link_templates(home)  # the shared, already built templates
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDLOT_")}
        return RuntimeDriver(case, home, [sys.executable], {**env, **canary}, logs / f"{case.name}.log")
    account = Account()
    return RuntimeDriver(case, account.make_home(), [*account.prefix, account.interpreter],
                         account.env(**canary), logs / f"{case.name}.log")


def remove_driver_home(driver: RuntimeDriver) -> None:
    if driver.case.account == "root":
        shutil.rmtree(driver.home, ignore_errors=True)
    else:
        remove_home(driver.home)


def enforces(runtime: RuntimeDriver, capability: str) -> bool:
    """Whether `runtime` enforces `capability`. If its case lacks it, assert that degradations()
    says so (a runtime may not quietly drop a protection) and answer False."""
    assert capability in CAPABILITIES, capability
    words = runtime.case.lacks.get(capability)
    if words is None:
        return True
    said = runtime.degradations()
    assert any(words in line for line in said), \
        f"{runtime.case.name} cannot enforce {capability!r} ({CAPABILITIES[capability]}) but its " \
        f"degradations() do not say so ({words!r}): {said}"
    return False


def new_sandbox_id() -> str:
    """20 characters, no '-' or '.', like the control plane's ids (whose length the runtimes' socket
    paths are sized for)."""
    return "c" + secrets.token_hex(10)[:19]


def spec(background: bool = False, **limits) -> SandboxSpec:
    """A spec with a fresh id (create() fills in the template)."""
    return SandboxSpec(new_sandbox_id(), "", Limits(**limits).validate(), background=background)


def agent_host_pid(socket_path: Path) -> int:
    """The host pid of the agent behind a socket (the peer's credentials, in our pid namespace)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(socket_path))
        pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid


@dataclass
class Box:
    """One sandbox under test; close() it once its traces have been looked for."""

    rt: RuntimeSandbox
    agent: AgentClient
    pid_ns: str  # its pid namespace ("pid:[N]"): every process of the sandbox is in it
    # Held open until close(): the kernel reuses the names of namespaces that are gone, and another
    # sandbox on this machine must not take this one's while the tests look for its processes.
    ns_fd: int

    @classmethod
    def of(cls, rt: RuntimeSandbox) -> Box:
        fd = os.open(f"/proc/{agent_host_pid(rt.socket_path)}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        return cls(rt, AgentClient(str(rt.socket_path)), os.readlink(f"/proc/self/fd/{fd}"), fd)

    def close(self) -> None:
        os.close(self.ns_fd)

    @property
    def id(self) -> str:
        return self.rt.sandbox_id

    async def run(self, code: str, timeout: float = 60, **kwargs) -> Result:
        """bash -c CODE through the agent, as the front door runs commands."""
        return await asyncio.wait_for(collect(self.agent.start("/bin/bash", ["-c", code], **kwargs)), timeout)

    async def python(self, code: str, timeout: float = 60, **kwargs) -> Result:
        return await asyncio.wait_for(collect(self.agent.start("python3", ["-c", code], **kwargs)), timeout)

