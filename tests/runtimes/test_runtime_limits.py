"""Limits: memory, processes, CPU and file size hold inside the sandbox, which lives on; what a
runtime cannot enforce it declares (runtime_support.enforces)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from agent_support import collect
from host_resources import pid_namespace_members
from runtime_support import enforces

from sandlot import SandlotError

MiB = 1 << 20
# bytes, not bytearray: the pages must really be written, not just reserved
MEMORY_BOMB = "x = []\nwhile True: x.append(b'x' * 10**7)"
HOLD = "import time\nx = b'x' * ({mb} << 20)\nprint('held', flush=True)\ntime.sleep({seconds})"
FORK_COUNT = """
import os, time
n = 0
try:
    while n < {most}:
        if os.fork() == 0:
            time.sleep({hold})
            os._exit(0)
        n += 1
except BlockingIOError:
    pass
print(n)
"""


async def test_a_memory_bomb_fails_alone(runtime, make_sandbox):
    bomb, neighbour = make_sandbox(memory_mb=64), make_sandbox()
    result = await bomb.python(MEMORY_BOMB)
    if enforces(runtime, "memory"):  # the sandbox's memory is full: the kernel's OOM killer
        assert result.end["status"] == "signal: killed", result
    else:  # the allocation fails in the process (the runtime says its limit is per process)
        assert result.exit_code == 1 and b"MemoryError" in result.stderr, result
    assert (await bomb.run("echo alive")).stdout == b"alive\n"
    assert (await neighbour.run("echo fine")).stdout == b"fine\n"


async def test_the_memory_limit_covers_the_whole_sandbox(runtime, make_sandbox):
    if not enforces(runtime, "memory"):
        return
    box = make_sandbox(memory_mb=64)
    # two processes of 40 MiB each: neither passes the limit alone, together they do
    holder_events = box.agent.start("python3", ["-c", HOLD.format(mb=40, seconds=60)])
    assert "start" in await holder_events.__anext__()
    assert await holder_events.__anext__() == {"stdout": b"held\n"}
    holder = asyncio.ensure_future(collect(holder_events))
    second = await box.python(HOLD.format(mb=40, seconds=0))
    if second.end["status"] != "signal: killed":  # the OOM killer took the holder instead
        assert (await asyncio.wait_for(holder, 30)).end["status"] == "signal: killed"
    holder.cancel()
    assert (await box.run("echo alive")).stdout == b"alive\n"


async def test_a_fork_bomb_stops_at_the_pids_limit(runtime, make_sandbox):
    if not enforces(runtime, "pids"):
        return
    bomb, neighbour = make_sandbox(pids=32), make_sandbox()
    # returns once the parent exits; its children keep the sandbox's process slots for 5 s
    forked = int((await bomb.python(FORK_COUNT.format(most=1000, hold=5))).stdout)
    assert 0 < forked < 32, forked
    assert len(pid_namespace_members(bomb.pid_ns)) <= 32
    # the neighbour is not affected (in the rootless runtime it runs as the same host uid)
    assert int((await neighbour.python(FORK_COUNT.format(most=60, hold=1))).stdout) == 60
    deadline = time.monotonic() + 20
    while True:  # the slots come back once the children exit
        try:
            if (await bomb.run("echo alive")).stdout == b"alive\n":
                break
        except SandlotError:
            pass
        assert time.monotonic() < deadline, "the sandbox did not recover from its fork bomb"
        await asyncio.sleep(0.5)


async def test_the_cpu_limit_gives_a_fraction_of_a_core(runtime, make_sandbox):
    if not enforces(runtime, "cpu"):
        return
    box = make_sandbox(cpu_count=0.2)
    busy = box.agent.start("python3", ["-c", "while True: pass"], tag="busy")
    assert "start" in await busy.__anext__()
    await asyncio.sleep(0.5)  # started and throttled
    used, began = runtime.usage(box.id).cpu_usage_ns, time.monotonic()
    await asyncio.sleep(2)
    share = (runtime.usage(box.id).cpu_usage_ns - used) / 1e9 / (time.monotonic() - began)
    await box.agent.send_signal(signal.SIGKILL, tag="busy")
    assert (await collect(busy)).end["status"] == "signal: killed"
    # a loop like this takes a whole core when unlimited; the quota allows 20 ms per 100 ms
    assert 0.08 <= share <= 0.3, share


async def test_no_file_grows_past_disk_mb(make_sandbox):
    box = make_sandbox(disk_mb=16)
    result = await box.run("head -c 20M /dev/zero > ~/big")
    assert result.exit_code != 0 and b"File size limit exceeded" in result.stderr, result  # SIGXFSZ
    assert int((await box.run("stat -c %s ~/big")).stdout) <= 16 * MiB
    assert (await box.run("head -c 10M /dev/zero > ~/small")).exit_code == 0
    assert (await box.run("ulimit -f unlimited")).exit_code != 0  # not to be lifted from inside
    with pytest.raises(SandlotError) as e:
        await box.agent.write("/home/user/upload", None, b"\0" * (17 * MiB))
    assert e.value.code == "resource_exhausted"
    assert (await box.run("echo alive")).stdout == b"alive\n"


async def test_disk_mb_caps_the_writable_layer(runtime, make_sandbox):
    if not enforces(runtime, "disk_quota"):
        return
    box = make_sandbox(disk_mb=16)
    result = await box.run("for i in 1 2 3; do head -c 8M /dev/zero > ~/part$i || exit 1; done")
    assert result.exit_code != 0 and b"No space left" in result.stderr, result


async def test_usage_and_disk_used_are_measured(runtime, make_sandbox):
    box = make_sandbox()
    idle = runtime.usage(box.id)
    assert idle.memory_bytes > MiB and idle.pids >= 1, idle
    before = runtime.disk_used(box.id)
    # 0.4 s of CPU time, however long the machine takes to give it
    await box.python("import time\nwhile time.process_time() < 0.4: pass")
    await box.run("head -c 3M /dev/urandom > ~/blob")
    assert runtime.usage(box.id).cpu_usage_ns - idle.cpu_usage_ns >= 300_000_000
    assert runtime.disk_used(box.id) - before >= 3 * MiB
