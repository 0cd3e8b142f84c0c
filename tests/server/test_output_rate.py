"""A sandbox that floods its output pays for it, not its neighbours: the control plane relays each
sandbox's command output through a rate (SANDLOT_OUTPUT_RATE_BYTES), so the relay's CPU (outside
any sandbox's cgroup) stays bounded and the flooding writers are slowed down instead."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pytest
from e2b import Sandbox
from support import leftovers, sdk_environment, start_server, wait_until

RATE = 8 << 20  # a small rate, so that the flood below takes seconds
FLOOD = 40 << 20


@pytest.fixture(scope="module")
def slow_relay():
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-rate-"))
    srv = start_server(home, pool_size=0, extra_env={"SANDLOT_OUTPUT_RATE_BYTES": str(RATE)})
    with sdk_environment(srv):
        yield srv
    srv.stop()
    left = leftovers(home)
    shutil.rmtree(home, ignore_errors=True)
    assert not left, left


def _true_latency(sbx, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sbx.commands.run("true")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_a_flood_is_slowed_down_and_its_neighbour_is_not(slow_relay):
    neighbour, floods = Sandbox.create(timeout=120), [Sandbox.create(timeout=120) for _ in range(2)]
    try:
        before = _true_latency(neighbour)
        received, took = [0, 0], [0.0, 0.0]

        def flood(i: int) -> None:
            def count(chunk: str) -> None:
                received[i] += len(chunk)

            start = time.monotonic()
            floods[i].commands.run(f"head -c {FLOOD} /dev/zero | tr '\\0' x", on_stdout=count, timeout=120)
            took[i] = time.monotonic() - start

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: all(received), 60, message="both floods under way")
        during = _true_latency(neighbour)
        for t in threads:
            t.join(180)
        idle = max(before, _true_latency(neighbour))  # the load from elsewhere can change in the meantime
        assert received == [FLOOD, FLOOD]  # slowed down, nothing lost
        # each sandbox's output came at most at its rate (after its burst of a quarter second's worth)
        for seconds in took:
            assert seconds >= (FLOOD - RATE // 4) / RATE * 0.9, took
        # the neighbour's commands did not wait for the floods: within 3x of idle plus 50 ms for a loaded
        # host (idle ~3 ms, during ~3-9 ms under load); a relay that blocks its loop while a flood waits
        # (time.sleep for asyncio.sleep in ByteRate.take) took ~130 ms
        assert during <= 3 * idle + 0.05, (idle, during)
    finally:
        for sbx in (neighbour, *floods):
            sbx.kill()
