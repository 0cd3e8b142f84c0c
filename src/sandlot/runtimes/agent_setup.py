"""Putting the agent into a sandbox: its code where sandboxes can read it, its agent.json, and the
wait for its socket. What the paths and the config are is protocol/contract.py's."""

from __future__ import annotations

import hashlib
import os
import py_compile
import select
import shutil
import socket
import time
from pathlib import Path

from .. import _exceptions as E
from ..protocol import contract
from .sandbox_process import start_ticks

PACKAGE = Path(__file__).resolve().parent.parent  # sandlot, on the host
# The in-sandbox tree: a package `sandlot` with only what runs inside, under empty __init__ files
# (the host's import the SDK). agent/, gateway/ (the MCP gateway: templates/gateway.py) and protocol/
# are stdlib only; kernels/ runs on the template's Jupyter. The control plane's own modules
# (server/agent_client.py above all) never go in.
TREE = {"agent": ("*.py",), "agent/importguard": ("sitecustomize.py",), "protocol": ("wire.py", "contract.py"),
        "gateway": ("*.py",), "kernels": ("*.py", "*.js", "*.java")}
EXECUTABLE = "agent/sudo_shim.py"  # bound at contract.SUDO_SHIM_PATH
AGENT_READY_TIMEOUT = 10.0


def tree_files() -> list[tuple[Path | None, str]]:
    """(host file, path in the tree) of every file of the in-sandbox tree; None: an empty __init__."""
    files = [(None, "__init__.py")]
    for sub, patterns in TREE.items():
        files.append((None, f"{sub}/__init__.py"))
        for pattern in patterns:
            files += [(p, f"{sub}/{p.name}") for p in sorted((PACKAGE / sub).glob(pattern))
                      if p.name != "__init__.py"]
    return files


def install_agent(parent: Path) -> Path:
    """Install the in-sandbox tree in `parent`, where sandboxes can read it (the package may live
    under a private directory such as /root); runtimes bind it at contract.CODE_DIR. One copy per
    code version: sandboxes adopted after an upgrade keep the copy they were started with (the agent
    imports lazily)."""
    files = tree_files()
    digest = hashlib.sha256(b"".join(n.encode() + (p.read_bytes() if p else b"") for p, n in files))
    dest = parent / f"agent-{digest.hexdigest()[:12]}"
    if dest.is_dir():
        return dest
    tmp = parent / f".agent-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    for sub in TREE:
        (tmp / sub).mkdir(mode=0o755)
    for p, name in files:
        if p is None:
            (tmp / name).write_bytes(b"")
        else:
            shutil.copyfile(p, tmp / name)
        os.chmod(tmp / name, 0o755 if name == EXECUTABLE else 0o644)
        # The agent runs with -B from a read-only bind: without these it compiles its modules at
        # every sandbox start (~8 ms). Hash-checked, so copies keep them valid; a template python
        # of another version looks for its own cache tag and compiles as before.
        if name.endswith(".py"):
            py_compile.compile(str(tmp / name), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    tmp.rename(dest)
    return dest


def write_config(run_dir: Path, config: contract.AgentConfig) -> None:
    """The sandbox's agent.json, in the host directory that is bound at contract.RUN_DIR."""
    (run_dir / contract.AGENT_CONFIG_NAME).write_text(config.to_json())


def policy_settings(run_dir: Path, spec, template) -> dict:
    """The AgentConfig fields that carry a sandbox's environment (a snapshot's variables under the
    request's) and its SecurityPolicy: the no-subprocess filter (written next to agent.json), the
    output cap, and the import guard's variables (advisory)."""
    from .seccomp import nofork_bpf

    security = spec.security
    envs = {**dict(template.envs), **spec.envs}
    if security.blocked_imports:
        envs["PYTHONPATH"] = contract.IMPORT_GUARD_DIR + (":" + envs["PYTHONPATH"] if envs.get("PYTHONPATH") else "")
        envs["SANDLOT_BLOCKED_IMPORTS"] = ",".join(security.blocked_imports)
    settings = {"envs": envs, "max_output_bytes": security.max_output_size or 0}
    if not security.allow_subprocess:
        (run_dir / contract.NOFORK_FILTER_NAME).write_bytes(nofork_bpf())
        settings["process_filter"] = contract.RUN_DIR + "/" + contract.NOFORK_FILTER_NAME
    return settings


def agent_answers(sock: Path, timeout: float = 2) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_for_ready(ready_fd: int, log: Path) -> None:
    """Return once the agent says its socket listens (a byte on the pipe it inherited as
    contract.READY_FD); raise with the sandbox's log if it ends or times out first. No polling:
    the pipe's other end closes with the sandbox."""
    poller = select.poll()
    poller.register(ready_fd, select.POLLIN)
    if poller.poll(AGENT_READY_TIMEOUT * 1000) and os.read(ready_fd, 1) == b"1":
        return
    _agent_failed(log)


def wait_for_agent(sock: Path, pid: int, log: Path) -> None:
    """Return once the agent accepts connections; raise with the sandbox's log if it never does."""
    deadline = time.monotonic() + AGENT_READY_TIMEOUT
    delay = 0.0005
    while time.monotonic() < deadline:
        if sock.exists() and agent_answers(sock):
            return
        if not start_ticks(pid):
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.002)  # the agent needs ~70 ms: poll finely, the checks are cheap
    _agent_failed(log)


def _agent_failed(log: Path):
    logtail = ""
    try:
        logtail = log.read_text()[-2000:]
    except OSError:
        pass
    raise E.RuntimeFailure(f"the sandbox agent did not start: {logtail.strip() or 'no output'}")
