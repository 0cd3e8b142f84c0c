"""The agent as a server: bad input gets error frames, misbehaving clients never take it down, it
stops cleanly on SIGTERM, stays lean when idle, and runs on the oldest python3 templates have."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import struct
import subprocess

import pytest
from agent_support import AGENT_PYTHON, collect, pid_alive, start_agent

from sandlot.protocol import wire
from sandlot import SandlotError
from sandlot.server.agent_client import AgentClient


def raw_request(path: str, data: bytes) -> bytes:
    """Send raw bytes, half-close, and return everything the agent answers."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        return reply


def error_code(reply: bytes) -> str:
    kind, length = struct.unpack(">cI", reply[:5])
    assert kind == b"J"
    return wire.decode_json(reply[5:5 + length])["error"]["code"]


async def test_ping_and_env(client, agent):
    assert await client.ping() == {"ok": True, "pid": agent.proc.pid}
    assert await client.env() == {"SANDBOX_WIDE": "yes"}


@pytest.mark.parametrize("data", [
    wire.encode_json({"op": "no.such.op"}),
    wire.encode_json({"no": "op"}),
    wire.encode(wire.JSON, b"not json"),
    wire.encode(wire.JSON, b"[1, 2]"),
    wire.encode(wire.DATA, b"data first"),
    struct.pack(">cI", b"J", 1 << 30),  # a frame larger than any allowed
    wire.encode_json({"op": "process.start", "cmd": 42}),
    wire.encode_json({"op": "process.start", "cmd": "/bin/true", "args": [1]}),
    wire.encode_json({"op": "process.signal", "pid": 1, "signal": "KILL"}),
    wire.encode_json({"op": "process.input", "pid": "one", "data": ""}),
    wire.encode_json({"op": "process.connect"}),
])
def test_bad_requests_get_invalid_argument(agent, data):
    assert error_code(raw_request(agent.socket, data)) == "invalid_argument"


async def test_unknown_process_is_not_found(client):
    for call in (client.connect(pid=1 << 22).__anext__(), client.send_input(b"x", pid=1 << 22),
                 client.close_stdin(tag="nobody"), client.resize(1, 1, tag="nobody")):
        with pytest.raises(SandlotError) as e:
            await call
        assert e.value.code == "not_found"


async def test_misbehaving_clients_leave_the_agent_serving(agent, client):
    garbage = [os.urandom(4096), b"J\x00\x00", b"", wire.encode_json({"op": "ping"})[:7]]
    for data in garbage:
        raw_request(agent.socket, data)
    # Connections that go away at every stage of a stream.
    streams = [client.start("/bin/bash", ["-c", "yes | head -c 50000000"]), client.read("/etc/passwd")]
    for stream in streams:
        await stream.__anext__()
        await stream.aclose()
    s = socket.socket(socket.AF_UNIX)
    s.connect(agent.socket)
    s.sendall(wire.encode_json({"op": "process.start", "cmd": "/bin/cat", "stdin": True}))
    s.close()
    writer_gone = socket.socket(socket.AF_UNIX)
    writer_gone.connect(agent.socket)
    writer_gone.sendall(wire.encode_json({"op": "files.write", "path": "/tmp/half-written"}) +
                        wire.encode(wire.DATA, b"x" * 1000))
    writer_gone.close()
    assert (await client.ping())["ok"]
    assert (await collect(client.start("/bin/echo", ["still", "here"]))).stdout == b"still here\n"
    assert agent.proc.poll() is None
    assert not os.path.exists("/tmp/half-written")  # a new file that broke off is not left half-written


async def test_many_concurrent_requests(client):
    replies = await asyncio.gather(*(client.ping() for _ in range(200)))
    assert all(r["ok"] for r in replies)
    results = await asyncio.gather(*(collect(client.start("/bin/echo", [str(i)])) for i in range(30)))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(30)]


async def test_unreachable_agent_is_unavailable(base_dir):
    with pytest.raises(SandlotError) as e:
        await AgentClient(str(base_dir / "nothing-here.sock")).ping()
    assert e.value.code == "unavailable"


async def test_sigterm_stops_cleanly_and_kills_processes(make_agent):
    agent = make_agent()
    events = agent.client.start("/bin/sleep", ["30"])
    pid = (await events.__anext__())["start"]["pid"]
    assert agent.stop() == 0
    assert not os.path.exists(agent.socket)
    with pytest.raises(SandlotError) as e:
        await collect(events)  # the stream broke off without an end
    assert e.value.code == "unavailable"
    for _ in range(100):
        if not pid_alive(pid):
            break
        await asyncio.sleep(0.02)
    assert not pid_alive(pid)


def test_idle_agent_holds_no_tls_and_no_op_modules(make_agent):
    agent = make_agent()
    with open(f"/proc/{agent.proc.pid}/maps") as f:
        maps = f.read()
    # not _ctypes: the privilege drop and every command's setfsuid go through it (agent/libc.py),
    # and the first command's modules are loaded as soon as the agent is up (server.preload)
    for library in ("libssl", "_ssl", "termios"):
        assert library not in maps


def test_agent_never_imports_asyncio(agent):
    """asyncio alone would cost every sandbox ~40 ms of start-up and ~8 MB: the agent has its own loop."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from sandlot.agent import main, server, processes, files, watch, sudo; "
            "print(sorted(m for m in ('asyncio', 'ssl') if m in sys.modules))")
    out = subprocess.run([AGENT_PYTHON, "-S", "-B", "-c", code, str(agent.dir / "opt")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def find_python(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}"),
                  *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))]
    for path in filter(None, candidates):
        if subprocess.run([path, "-c", ""], capture_output=True).returncode == 0:  # not a dangling shim
            return path
    return None


@pytest.mark.parametrize("version", ["3.9", "3.13"])
async def test_runs_on_other_python_versions(base_dir, user, version):
    python = find_python(version)
    if python is None:
        pytest.skip(f"python{version} is not installed")
    agent = start_agent(base_dir, python=python, default_user=user.pw_name, allow_sudo=True)
    try:
        client = agent.client
        result = await collect(client.start("/bin/bash", ["-c", "id -un; stty size"], pty={"cols": 77, "rows": 5}))
        assert result.pty.split() == [user.pw_name.encode(), b"5", b"77"]
        assert (await client.write("v.txt", None, b"v", metadata={"k": "v"}))["metadata"] == {"k": "v"}
        watch = client.watch(user.pw_dir)
        await watch.__anext__()
        await client.remove("v.txt")
        assert (await watch.__anext__())["event"]["type"] == "remove"
        await watch.aclose()
    finally:
        assert agent.stop() == 0, agent.log()


async def test_closing_or_dropping_a_stream_closes_its_connection(agent, client, home):
    def open_fds() -> int:
        return len(os.listdir(f"/proc/{agent.proc.pid}/fd"))

    async def settle(expected: int) -> int:
        # at most the baseline: a transient fd of an earlier test (a pidfd, a pipe) may close meanwhile
        for _ in range(300):
            if open_fds() <= expected:
                break
            await asyncio.sleep(0.01)
        return open_fds()

    baseline = open_fds()
    stream = client.watch(str(home))
    await stream.__anext__()
    assert open_fds() > baseline  # its connection and its inotify instance
    await stream.aclose()
    assert await settle(baseline) <= baseline
    stream = client.watch(str(home))
    await stream.__anext__()
    del stream  # dropped without aclose(): asyncio finalizes the generator
    assert await settle(baseline) <= baseline


async def test_a_keeping_client_gets_every_answer_from_an_agent_that_does_not_keep(agent, home):
    """This agent's peer is in its own pid namespace (not the host's control plane), so it closes
    each connection after its op whatever the request says. A client that keeps connections then
    finds the kept one closed, often just as it sends the next request on it, and sends the
    request again on a new connection: every command runs once and every call gets its answer."""
    log = home / "kept.log"
    log.unlink(missing_ok=True)
    keeping = AgentClient(agent.socket, keep=True)
    try:
        for i in range(40):
            result = await collect(keeping.start("/bin/sh", ["-c", f"echo {i} | tee -a {log}"]))
            assert (result.stdout, result.exit_code) == (f"{i}\n".encode(), 0)
            assert (await keeping.stat(str(log)))["type"] == "file"
            if i % 10 == 0:
                await asyncio.sleep(0.05)  # the agent's close seen before the next request, too
        assert log.read_text().split() == [str(i) for i in range(40)]  # each once, in order
    finally:
        keeping.close()
