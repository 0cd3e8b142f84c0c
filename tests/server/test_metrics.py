"""Sandbox metrics: sampled every 5 s and kept, plus a reading taken at request time; time ranges;
cpu usage that reflects real work (e2b SDK and REST)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from e2b import Sandbox


@pytest.fixture
def sbx(sdk_env):
    sandbox = Sandbox.create(timeout=120)
    yield sandbox
    sandbox.kill()


def test_cpu_use_shows_and_samples_accumulate(sbx):
    sbx.commands.run("timeout 1.5 sh -c 'while :; do :; done'; true")
    first = sbx.get_metrics()
    assert first[-1].cpu_used_pct > 25, first  # 1.5 s of a busy core in a sandbox ~2 s old
    time.sleep(5.5)  # at least one 5 s sample is now on record besides the fresh reading
    later = sbx.get_metrics()
    assert len(later) >= 2
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
    time.sleep(5.5)  # a recorded sample, then nothing runs in the sandbox
    idle = sbx.get_metrics()
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
