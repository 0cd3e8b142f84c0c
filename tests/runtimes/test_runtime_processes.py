"""Processes through the agent: output and exit codes, signals, stdin, deadlines, and processes
that outlive the request that started them."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from agent_support import collect
from runtime_support import agent_host_pid

from sandlot import SandlotError
from sandlot.server.agent_client import AgentClient


async def test_output_and_exit_codes(sandbox):
    result = await sandbox.run("echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 3)
    assert result.end["status"] == "exit status 3"
    assert (await sandbox.run("true")).end == {"exit_code": 0, "exited": True, "status": "exit status 0"}
    big = await sandbox.run("head -c 3000000 /dev/zero | tr '\\0' x")
    assert big.stdout == b"x" * 3_000_000


async def test_signals_end_a_process(sandbox):
    for sig, status in ((signal.SIGTERM, "signal: terminated"), (signal.SIGKILL, "signal: killed")):
        events = sandbox.agent.start("/bin/sleep", ["600"], tag=f"sleeper-{sig}")
        pid = (await events.__anext__())["start"]["pid"]
        assert pid in [p["pid"] for p in await sandbox.agent.list_processes()]
        await sandbox.agent.send_signal(sig, pid=pid)
        end = (await asyncio.wait_for(collect(events), 20)).end
        assert end == {"exit_code": -1, "exited": False, "status": status, "error": status}
    assert (await sandbox.run("echo still here")).stdout == b"still here\n"


async def test_stdin(sandbox):
    events = sandbox.agent.start("/bin/cat", stdin=True)
    pid = (await events.__anext__())["start"]["pid"]
    await sandbox.agent.send_input(b"first line\n", pid=pid)
    await sandbox.agent.send_input(b"second", pid=pid)
    await sandbox.agent.close_stdin(pid=pid)
    result = await asyncio.wait_for(collect(events), 20)
    assert (result.stdout, result.exit_code) == (b"first line\nsecond", 0)


async def test_a_deadline_kills_the_process(sandbox):
    result = await asyncio.wait_for(collect(sandbox.agent.start("/bin/sleep", ["600"], timeout_ms=300)), 20)
    assert result.end["status"] == "signal: killed"


async def test_a_process_outlives_its_request_and_can_be_followed(sandbox):
    events = sandbox.agent.start("/bin/bash", ["-c", "read line; echo got $line"], stdin=True, tag="worker")
    assert "start" in await events.__anext__()
    await events.aclose()  # the caller goes away; the process does not
    follower = sandbox.agent.connect(tag="worker")
    assert "start" in await follower.__anext__()
    await sandbox.agent.send_input(b"work\n", tag="worker")
    result = await asyncio.wait_for(collect(follower), 20)
    assert (result.stdout, result.exit_code) == (b"got work\n", 0)


async def test_the_agent_serves_a_kept_connection_one_request_after_another(sandbox):
    """The control plane keeps the agent connection of a command or call that ended cleanly and
    sends its next request on it: the agent accepts no new connection for it. An error reply and
    a stream dropped before its end each end their connection, and the next request still gets
    through. (The agent's sockets are compared across each step, not with a fixed set: a probe's
    connection, agent_host_pid's, may still be closing.)"""
    agent_pid = agent_host_pid(sandbox.rt.socket_path)
    keeping = AgentClient(str(sandbox.rt.socket_path), keep=True)

    def sockets() -> set[str]:
        found = set()
        for fd in os.listdir(f"/proc/{agent_pid}/fd"):
            try:
                link = os.readlink(f"/proc/{agent_pid}/fd/{fd}")
            except FileNotFoundError:  # closed meanwhile
                continue
            if link.startswith("socket:"):
                found.add(link)
        return found

    async def closed(connection: set[str]) -> bool:
        for _ in range(500):  # the agent closes a connection once it sees the client's end
            if connection.isdisjoint(sockets()):
                return True
            await asyncio.sleep(0.01)
        return False

    async def kept_after(code: str) -> set[str]:
        """Run `code`; the agent's sockets that are new and still open after its end."""
        ahead = sockets()
        result = await asyncio.wait_for(collect(keeping.start("/bin/bash", ["-c", code])), 60)
        assert (result.stdout, result.exit_code) == (code.removeprefix("echo ").encode() + b"\n", 0)
        return sockets() - ahead

    try:
        kept = await kept_after("echo one")
        assert len(kept) == 1  # the connection the command came on, open after its end
        for i in range(5):
            assert await kept_after(f"echo {i}") == set()  # no new connection...
            assert isinstance(await keeping.list_processes(), list)
            assert kept <= sockets()  # ...the same one carried them all

        with pytest.raises(SandlotError):  # an error reply ends the connection that got it
            await collect(keeping.start("/bin/true", cwd="/no/such/dir"))
        assert await closed(kept)
        kept = await kept_after("echo after an error")
        assert len(kept) == 1

        stream = keeping.start("/bin/sleep", ["60"])
        pid = (await stream.__anext__())["start"]["pid"]
        assert kept <= sockets()  # the stream came on the kept connection
        await stream.aclose()  # dropped before its end: its connection closes, the process runs on
        assert await closed(kept)
        ahead = sockets()
        await keeping.send_signal(signal.SIGKILL, pid=pid)  # a call on a new connection, kept after it
        kept = sockets() - ahead
        assert len(kept) == 1
        assert await kept_after("echo after a dropped stream") == set()  # the next command came on it
        assert kept <= sockets()
    finally:
        keeping.close()
    assert await closed(kept)  # close() ends the kept connection
