"""What sandboxes use: the samples E2B's getMetrics answers (CPU, memory, disk, network), taken every
METRICS_INTERVAL s for running sandboxes and once more when asked.

Reading a sandbox's disk use is one statvfs of its own disk (runtimes/disk.py); a runtime without
one walks its writable layer (300k files: seconds of a thread, holding the GIL). Readings run in a
thread of their own (creates and kills keep the default executor), at most one per sandbox in
flight; a reading is fresh for METRICS_INTERVAL, and one that took t seconds for
DISK_WALK_SPACING * t, so walks keep that thread busy at most ~1/DISK_WALK_SPACING of the time
however many clients poll. A reader never waits for a walk but a sandbox's first: it gets the last
reading while the next is taken.

The periodic pass is one job in that thread for all running sandboxes (each one's cgroup read once):
the event loop's share of it does not grow with the number of sandboxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .. import _exceptions as E
from ..runtimes.interface import Runtime, Usage
from ..runtimes.policy import Limits
from .live import LiveSandbox, Sandboxes

log = logging.getLogger("sandlot.service")

METRICS_INTERVAL = 5.0  # E2B's sampling period
USAGE_THREADS = 1
DISK_WALK_SPACING = 10


class UsageSampler:
    def __init__(self, sandboxes: Sandboxes, runtime: Runtime, network_usage: Callable[[str], tuple[int, int]]):
        """`network_usage(sandbox_id)`: (bytes out, bytes in) of its network (sandbox_networks.py)."""
        self.sandboxes, self.runtime, self.network_usage = sandboxes, runtime, network_usage
        self._threads = ThreadPoolExecutor(USAGE_THREADS, thread_name_prefix="sandlot-usage")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def metrics(self, sandbox_id: str, start: float | None = None, end: float | None = None) -> list[dict]:
        """Samples taken every METRICS_INTERVAL s within [start, end] (unix s), and one taken now if
        `end` is not in the past (in a thread: it walks the sandbox's writable layer)."""
        live = self.sandboxes.known(sandbox_id)
        if start is not None and end is not None and start > end:
            raise E.InvalidArgument("start must not be after end")
        found = [m for m in live.samples if (start is None or m["timestamp"] >= start)
                 and (end is None or m["timestamp"] <= end)]
        now = time.time()
        if live.rt is not None and (end is None or end >= now) and (start is None or start <= now):
            disk = await self.disk_used(live)
            found.append(await asyncio.to_thread(self._sample, live, now, disk))  # a few cgroup files
        return found

    async def disk_used(self, live: LiveSandbox) -> int:
        """The sandbox's disk use as last read; a stale reading starts the next walk (USAGE_THREADS)."""
        if (fresh := _fresh_disk(live)) is not None:
            return fresh
        if live.walking is None or live.walking.done():
            live.walking = asyncio.get_running_loop().run_in_executor(self._threads, self._walk, live)
            live.walking.add_done_callback(_walked)
        if live.disk is not None:
            return live.disk[1]
        return await asyncio.shield(live.walking)

    def _walk(self, live: LiveSandbox, cpu_ns: int | None = None) -> int:
        """`cpu_ns`: the sandbox's CPU time, if just read."""
        started = time.monotonic()
        if cpu_ns is None:
            cpu_ns = self.runtime.usage(live.id).cpu_usage_ns
        if live.disk is not None and live.disk_cpu_ns == cpu_ns:
            # nothing ran in the sandbox since the last walk (its agent writes files too), so nothing
            # wrote to its layer: the walk (~0.3 ms for an idle sandbox) is skipped
            used, took = live.disk[1], 0.0
        else:
            used = self.runtime.disk_used(live.id)
            took = time.monotonic() - started
        live.disk, live.disk_cpu_ns = (time.monotonic() + max(METRICS_INTERVAL, DISK_WALK_SPACING * took), used), cpu_ns
        return used

    def _sample(self, live: LiveSandbox, now: float, disk_used: int, usage: Usage | None = None) -> dict:
        """One reading; cpu is the share used since the previous sample (or since the start)."""
        usage = usage or self.runtime.usage(live.id)
        limits = Limits(**live.record.limits)
        before = live.samples[-1] if live.samples else {"timestamp": live.record.started_at, "cpu_ns": 0}
        elapsed_ns = max(now - before["timestamp"], 1e-3) * 1e9
        cpu_pct = max(0.0, (usage.cpu_usage_ns - before["cpu_ns"]) / elapsed_ns / limits.cpu_count * 100)
        net_out, net_in = self.network_usage(live.id)
        return {
            "net_out": net_out, "net_in": net_in,
            "timestamp": now, "cpu_ns": usage.cpu_usage_ns,
            "cpu_count": limits.cpu_count, "cpu_used_pct": round(min(cpu_pct, 100.0), 2),
            "mem_used": usage.memory_bytes, "mem_total": limits.memory_mb * 1024 * 1024,
            "mem_cache": usage.memory_cache_bytes, "disk_used": disk_used,
            "disk_total": limits.disk_mb * 1024 * 1024,
        }

    async def run(self) -> None:
        """Sample every running sandbox every METRICS_INTERVAL s (the server's task)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            await loop.run_in_executor(self._threads, self._sample_all, list(self.sandboxes.live.values()))

    def _sample_all(self, running: list[LiveSandbox]) -> None:
        """One pass, in the usage thread: each sandbox's cgroup read once, its disk when its last
        reading is stale (a walk is skipped if nothing ran since, see _walk), its link's counters."""
        for live in running:
            try:
                now, usage = time.time(), self.runtime.usage(live.id, live.usage)
                live.usage = usage
                disk = _fresh_disk(live)
                if disk is None:
                    disk = self._walk(live, usage.cpu_usage_ns)
                live.samples.append(self._sample(live, now, disk, usage))
            except Exception as e:  # gone meanwhile: the reaper deals with it
                log.debug("no metrics for sandbox %s: %s", live.id, e)


def _fresh_disk(live: LiveSandbox) -> int | None:
    """The sandbox's disk use as last read, if that reading is still fresh."""
    if live.disk is not None and time.monotonic() < live.disk[0]:
        return live.disk[1]
    return None


def _walked(walk: asyncio.Future) -> None:
    """A walk nobody awaited (its readers took the last reading) failed: the sandbox went meanwhile."""
    if not walk.cancelled() and walk.exception() is not None:
        log.debug("disk use not read: %s", walk.exception())


