"""Talking to a sandbox's agent as the control plane does, and running the real agent on the host
as the runtime starts it in a sandbox (its in-sandbox tree installed as the runtimes install it,
started with contract.agent_command), and reading its streams: the agent, envd and runtime
conformance suites share it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandlot.protocol.contract import AgentConfig, agent_command
from sandlot.runtimes.agent_setup import install_agent
# The host's agent client, for every suite that talks to an agent (it raises SandlotErrors whose
# `.code` is the agent's Connect code name).
from sandlot.server.agent_client import AgentClient  # noqa: F401 - re-exported

AGENT_DIR = Path(__file__).resolve().parents[1] / "src" / "sandlot" / "agent"
# The template's python3 in a real sandbox; Debian's here. SANDLOT_AGENT_PYTHON picks another.
AGENT_PYTHON = os.environ.get("SANDLOT_AGENT_PYTHON") or (
    "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)


@dataclass
class Agent:
    proc: subprocess.Popen
    socket: str
    dir: Path
    client: AgentClient

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return (self.dir / "agent.log").read_text()


def start_agent(base: Path, python: str = AGENT_PYTHON, **config) -> Agent:
    d = Path(tempfile.mkdtemp(prefix="agent-", dir=base))
    os.chmod(d, 0o755)  # other users reach the socket, like the sudo shim in a sandbox
    (d / "opt").mkdir()
    (d / "opt" / "sandlot").symlink_to(install_agent(base))
    (d / "agent.json").write_text(AgentConfig(**config).to_json())
    sock = str(d / "agent.sock")
    with open(d / "agent.log", "wb") as log:
        proc = subprocess.Popen(agent_command(python, str(d / "opt"), sock, str(d / "agent.json")),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    agent = Agent(proc, sock, d, AgentClient(sock))
    deadline = time.monotonic() + 10
    while True:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(sock)
                return agent
            except OSError:
                pass
        if proc.poll() is not None or time.monotonic() > deadline:
            agent.stop()
            raise RuntimeError("the agent did not start:\n" + agent.log())
        time.sleep(0.01)


@dataclass
class Result:
    pid: int
    stdout: bytes
    stderr: bytes
    pty: bytes
    end: dict

    @property
    def exit_code(self) -> int:
        return self.end["exit_code"]


async def collect(events) -> Result:
    """Drain a process event stream into a Result (keepalives ignored)."""
    pid, out, err, pty, end = None, [], [], [], None
    async for event in events:
        if "start" in event:
            pid = event["start"]["pid"]
        out.append(event.get("stdout", b""))
        err.append(event.get("stderr", b""))
        pty.append(event.get("pty", b""))
        end = event.get("end", end)
    return Result(pid, b"".join(out), b"".join(err), b"".join(pty), end)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
