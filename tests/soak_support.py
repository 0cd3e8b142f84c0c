"""The soak workload (issue 17), run against a real server through the official async SDKs: cycles of
create -> exec -> file write and read -> kill, every `pause_every`-th one paused and resumed on the
way (its file still there), every `code_every`-th one a `code-interpreter` sandbox whose code context
runs a cell, `concurrency` cycles at a time. It records every error, the server's RSS as the
cycles go and its open fds before and after; `host_resources.Footprint` then says what the server's
sandboxes still hold.

Used by tests/server/test_soak.py (short) and benchmarks/scale.py --soak (long).
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from support import Server


# fds the server opens for good on its way: 4 in the short soak (the stem zygote's socket,
# /dev/loop-control, two unix sockets). A kill that left its sandbox's kept agent connection open
# showed +14 there (the rest closed only as their objects were collected).
FD_SLACK = 8


def open_fds(pid: int) -> int:
    """The process's open fds but its TCP sockets: those are the HTTP connections the soak's own
    SDK clients keep alive (the server's to its agents are unix sockets)."""
    tcp = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        tcp.update(f"socket:[{line.split()[9]}]" for line in Path(table).read_text().splitlines()[1:])
    fds = Path(f"/proc/{pid}/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            pass  # closed meanwhile
    return sum(target not in tcp for target in targets)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class SoakResult:
    cycles: int
    seconds: float
    errors: list[str] = field(default_factory=list)
    rss: dict[int, int] = field(default_factory=dict)  # cycles done -> the server's RSS then
    kinds: dict[str, int] = field(default_factory=dict)  # cycles of each kind that completed
    fds: tuple[int, int] = (0, 0)  # the server's open fds before the first cycle and after the last

    def fds_grown(self) -> int:
        return self.fds[1] - self.fds[0]

    def rss_growth(self, start: int) -> tuple[int, float]:
        """(cycles, growth): the first RSS sample at or after `start` cycles, and the relative growth
        of the server's RSS from it to the end."""
        marks = sorted(self.rss)
        first = next((m for m in marks if m >= start), marks[0])
        return first, self.rss[marks[-1]] / self.rss[first] - 1


async def _cycle(i: int, kind: str) -> None:
    from e2b import AsyncSandbox

    if kind == "code":
        from e2b_code_interpreter import AsyncSandbox as CodeSandbox

        sbx = await CodeSandbox.create("code-interpreter", timeout=300)
    else:
        sbx = await AsyncSandbox.create("base", timeout=300)
    try:
        assert (await sbx.commands.run(f"echo {i}")).stdout == f"{i}\n"
        path = f"/home/user/cycle-{i}.txt"
        await sbx.files.write(path, f"cycle {i}\n" * 100)
        if kind == "pause":
            assert await sbx.pause() is True
            sbx = await AsyncSandbox.connect(sbx.sandbox_id, timeout=300)  # resumes it
        assert await sbx.files.read(path) == f"cycle {i}\n" * 100
        if kind == "code":
            context = await sbx.create_code_context()
            execution = await sbx.run_code(f"x = {i}\nx + 1", context=context)
            assert execution.error is None and execution.text == str(i + 1), execution
    finally:
        await sbx.kill()


async def soak(server: Server, cycles: int, concurrency: int = 20, pause_every: int = 5, code_every: int = 0,
               rss_every: int = 100) -> SoakResult:
    """Run `cycles` cycles, `concurrency` at a time (the SDKs' environment must point at `server`);
    code_every=0: no code-interpreter cycles."""
    result = SoakResult(cycles, 0.0)
    counter = iter(range(cycles))
    done = 0
    started = time.monotonic()

    def kind_of(i: int) -> str:
        if code_every and i % code_every == code_every - 1:
            return "code"
        return "pause" if pause_every and i % pause_every == pause_every - 1 else "plain"

    async def worker() -> None:
        nonlocal done
        for i in counter:
            kind = kind_of(i)
            try:
                await _cycle(i, kind)
                result.kinds[kind] = result.kinds.get(kind, 0) + 1
            except Exception:
                result.errors.append(f"cycle {i} ({kind}): {traceback.format_exc(limit=3)}")
            done += 1
            if done % rss_every == 0 or done == cycles:
                result.rss[done] = rss(server.proc.pid)

    result.rss[0] = rss(server.proc.pid)
    fds = open_fds(server.proc.pid)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    result.fds = (fds, open_fds(server.proc.pid))  # every cycle's sandbox is killed: what it held is closed
    return result
