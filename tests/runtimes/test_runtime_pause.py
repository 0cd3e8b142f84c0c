"""Pause: freeze() stops every process of the sandbox, thawing resumes them where they were; a
runtime without it refuses with Unsupported (and declares it)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from host_resources import pid_namespace_members, sandbox_traces
from runtime_support import enforces

from sandlot._exceptions import Unsupported

BUSY = "import time\nwhile True: time.time()  # busy-marker"


def _ticks(pid: int) -> int:
    """CPU time the process has used (utime + stime, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _busy_pid(box) -> int:
    deadline = time.monotonic() + 10
    while True:
        found = [pid for pid in pid_namespace_members(box.pid_ns)
                 if b"busy-marker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)


async def test_freeze_stops_everything_until_thawed(runtime, make_sandbox):
    box = make_sandbox()
    if not enforces(runtime, "pause"):
        with pytest.raises(Unsupported):
            runtime.freeze(box.id, True)
        assert (await box.run("echo still running")).stdout == b"still running\n"
        return
    busy = box.agent.start("python3", ["-c", BUSY])
    assert "start" in await busy.__anext__()
    pid = _busy_pid(box)
    runtime.freeze(box.id, True)
    try:
        frozen_at = _ticks(pid)
        await asyncio.sleep(1)
        assert _ticks(pid) == frozen_at  # not one tick of CPU while frozen
        with pytest.raises(asyncio.TimeoutError):  # the agent is frozen too
            await asyncio.wait_for(box.agent.ping(), 1)
    finally:
        runtime.freeze(box.id, False)
    deadline = time.monotonic() + 10
    while _ticks(pid) == frozen_at:  # it goes on where it was
        assert time.monotonic() < deadline, "the thawed process did not run again"
        await asyncio.sleep(0.05)
    assert (await box.agent.ping())["ok"] is True
    await busy.aclose()


async def test_a_frozen_sandbox_can_be_killed(runtime, make_sandbox):
    box = make_sandbox()
    if not enforces(runtime, "pause"):
        return
    await box.run("nohup sleep 600 >/dev/null 2>&1 &")
    runtime.freeze(box.id, True)
    runtime.kill(box.id)
    assert not runtime.alive(box.rt)
    assert sandbox_traces(box.id, runtime.home, box.pid_ns) == {}
