"""Sandbox metrics: sampled every 5 s and kept, plus a reading taken at request time; time ranges;
cpu usage that reflects real work (e2b SDK and REST)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from e2b import Sandbox
from support import wait_until

BUSY = 1.5  # CPU seconds of busy work in the sandbox


@pytest.fixture
def sbx(sdk_env):
    sandbox = Sandbox.create(timeout=120)
    yield sandbox
    sandbox.kill()


def _with_a_recorded_sample(sbx):
    """The sandbox's metrics once they hold a 5 s sample besides the fresh reading: 5 s on when
    idle, waited for as the sampler's pass may come late under load."""
    def metrics():
        found = sbx.get_metrics()
        return found if len(found) >= 2 else None

    return wait_until(metrics, timeout=30, interval=0.5, message="a recorded sample")


def test_cpu_use_shows_and_samples_accumulate(sbx):
    # 1.5 s of the sandbox's CPU time (a loaded host stretches the wall time it takes): the share
    # the fresh reading shows, over the time since the sample before it, must hold them, once no
    # 5 s sample was taken during the work (which would split it)
    for _ in range(3):
        began = datetime.now(timezone.utc)
        sbx.commands.run(f"python3 -c 'import time\nwhile time.process_time() < {BUSY}: pass'")
        first = sbx.get_metrics()
        since = first[-2].timestamp if len(first) >= 2 else sbx.get_info().started_at
        if since <= began:
            break
    reading = first[-1]
    used = reading.cpu_used_pct / 100 * reading.cpu_count * (reading.timestamp - since).total_seconds()
    assert since <= began and used >= 0.9 * BUSY, (used, since, began, first)
    later = _with_a_recorded_sample(sbx)
    stamps = [m.timestamp for m in later]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # A range in the past holds only recorded samples; one in the future holds nothing. The range
    # ends just after the last recorded sample of `later` (the next one comes 5 s after it). The
    # SDK sends whole seconds, so its end may still lie ahead of the server's clock, and a range
    # that reaches the present rightly gets a fresh reading: ask once the end has passed.
    end = later[-2].timestamp + timedelta(seconds=1)
    wire_end = int(end.timestamp())
    while time.time() <= wire_end:
        time.sleep(wire_end + 0.05 - time.time())
    now = datetime.now(timezone.utc)
    past = sbx.get_metrics(start=now - timedelta(minutes=5), end=end)
    assert past and all(m.timestamp <= end for m in past)
    assert [m.timestamp for m in past] == stamps[:-1]  # all recorded ones, not the fresh reading
    assert sbx.get_metrics(start=now + timedelta(minutes=5)) == []


def test_disk_use_follows_writes_after_idle_samples(sbx):
    """An idle sandbox's samples reuse the last walk of its layer (nothing ran, nothing wrote); after
    a write its layer is walked again (readers get the last reading at once, never waiting for a
    walk: the one after the write comes with the next walk, within a sampling period or two)."""
    idle = _with_a_recorded_sample(sbx)  # and nothing runs in the sandbox
    assert idle[-1].disk_used == idle[-2].disk_used
    sbx.files.write("/home/user/blob.bin", b"x" * (3 << 20))
    deadline = time.monotonic() + 15
    while (after := sbx.get_metrics()[-1]).disk_used - idle[-1].disk_used < 3 << 20:
        assert time.monotonic() < deadline, (idle[-1], after)
        time.sleep(0.5)


def test_bad_ranges_are_clear_errors(sbx, api):
    path = f"/sandboxes/{sbx.sandbox_id}/metrics"
    r = api.get(path, params={"start": "yesterday"})
    assert r.status_code == 400 and "start" in r.json()["message"]
    r = api.get(path, params={"start": 2000, "end": 1000})
    assert r.status_code == 400 and "start" in r.json()["message"]
    assert api.get(path, params={"start": 0, "end": int(time.time()) + 60}).status_code == 200
