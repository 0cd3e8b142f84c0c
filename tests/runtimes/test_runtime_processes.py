"""Processes through the agent: output and exit codes, signals, stdin, deadlines, and processes
that outlive the request that started them."""

from __future__ import annotations

import asyncio
import signal

from agent_support import collect


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
