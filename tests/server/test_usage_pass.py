"""The usage sampler's periodic pass (server/usage.py): one job in its thread for all running
sandboxes, each one's cgroup read once, a disk walk only when something ran since the last, and
nothing per sandbox on the event loop (2000 idle sandboxes cost the server ~0.3 core before).

The runtime here counts calls and makes numbers up: what the pass reads and schedules is the
subject. The samples' values against real sandboxes are tested in test_metrics.py and the e2b
suite's getMetrics tests."""

import asyncio
import time
from collections import Counter

from sandlot.runtimes.cgroups import Usage
from sandlot.server import usage
from sandlot.server.live import LiveSandbox
from sandlot.server.store import SandboxRecord


class CountingRuntime:
    def __init__(self, busy: set[str]):
        self.busy = busy  # these sandboxes use CPU between passes
        self.reads, self.walks, self.cpu = Counter(), Counter(), Counter()

    def usage(self, sandbox_id: str, previous: Usage | None = None) -> Usage:
        self.reads[sandbox_id] += 1
        if sandbox_id in self.busy:
            self.cpu[sandbox_id] += 1_000_000
        return Usage(memory_bytes=1 << 20, memory_cache_bytes=0, cpu_usage_ns=self.cpu[sandbox_id], pids=1)

    def disk_used(self, sandbox_id: str) -> int:
        self.walks[sandbox_id] += 1
        return 4096


def _sandboxes(n: int) -> dict[str, LiveSandbox]:
    now = time.time()
    return {f"s{i}": LiveSandbox(SandboxRecord(f"s{i}", "base", "running", now, now + 60), rt=None, agent=None)
            for i in range(n)}


class Table:
    def __init__(self, live):
        self.live, self.paused = live, {}


def test_a_pass_reads_each_sandbox_once_and_walks_only_what_ran():
    live = _sandboxes(40)
    busy = {f"s{i}" for i in range(0, 40, 4)}
    runtime = CountingRuntime(busy)
    sampler = usage.UsageSampler(Table(live), runtime, lambda sid: (0, 0))
    try:
        for n in range(1, 4):
            for box in live.values():
                box.disk = None if box.disk is None else (0.0, box.disk[1])  # stale: each pass may walk
            sampler._sample_all(list(live.values()))
            assert all(runtime.reads[sid] == n for sid in live)  # once per pass, not once per reading
            assert all(len(box.samples) == n for box in live.values())
        assert all(runtime.walks[sid] == (3 if sid in busy else 1) for sid in live)
    finally:
        sampler.close()


def test_the_loop_schedules_one_job_per_pass_however_many_sandboxes(monkeypatch):
    live = _sandboxes(200)
    runtime = CountingRuntime(set())
    sampler = usage.UsageSampler(Table(live), runtime, lambda sid: (0, 0))
    jobs = []
    submit = sampler._threads.submit
    monkeypatch.setattr(sampler._threads, "submit", lambda *a, **k: jobs.append(a[0]) or submit(*a, **k))
    monkeypatch.setattr(usage, "METRICS_INTERVAL", 0.05)

    async def main():
        task = asyncio.create_task(sampler.run())
        while min(len(box.samples) for box in live.values()) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    try:
        asyncio.run(main())
    finally:
        sampler.close()
    passes = min(runtime.reads.values())
    assert passes >= 3
    assert len(jobs) <= passes + 1  # one job per pass (the last may still be queued), not one per sandbox
