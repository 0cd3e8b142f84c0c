"""Stems (runtimes/stems.py): sandbox processes forked ahead of time into spare cgroups. A refill
forks the whole server, so while a stem is left it waits REFILL_DELAY rather than run beside the
create that took one; once the stock is out it forks at once. Real forks, real cgroups."""

import os
import secrets
import time

import pytest

from sandlot.runtimes import cgroups, stems
from sandlot.runtimes.stems import Stems

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not cgroups.detect(), reason="needs root and cgroups")


def _reap(pid: int) -> None:
    pass  # reaped by the test itself (waitpid below)


def _ready(s: Stems, n: int, within: float = 10.0, settled: bool = True) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with s._lock:
            if len(s._stems) >= n and (s._filling is None or not settled):
                return
        time.sleep(0.01)
    raise AssertionError(f"{n} stems not forked within {within} s")


def _stock(s: Stems) -> int:
    with s._lock:
        return len(s._stems)


def _take_ready(s: Stems, within: float = 10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        stem = s.take()
        if stem is not None:
            return stem
        time.sleep(0.01)
    raise AssertionError("no stem became ready")


@pytest.fixture
def stock():
    group = "sandlot-stemtest-" + secrets.token_hex(4)
    version = cgroups.detect()
    s = Stems(version, group, _reap, keep=2)
    taken = []
    yield s, taken
    s.close()
    for stem in taken:
        stems.discard(stem, version, group)
    for stem in taken:
        try:
            os.waitpid(stem.pid, 0)
        except ChildProcessError:
            pass
    assert not cgroups.leftovers(group)


def test_a_refill_waits_while_a_stem_is_left_and_forks_at_once_when_none_is(stock):
    s, taken = stock
    s.take()  # starts the first fill
    _ready(s, 2)
    taken.append(_take_ready(s))
    time.sleep(0.03)
    assert _stock(s) == 1  # one is left: the refill has not forked beside this create
    _ready(s, 2, within=5)  # ...but it does, after the delay
    taken.append(_take_ready(s))
    taken.append(_take_ready(s))
    assert _stock(s) == 0
    started = time.monotonic()
    _ready(s, 1, within=5, settled=False)  # none left: the refill forks at once
    assert time.monotonic() - started < stems.REFILL_DELAY
    _ready(s, 2)


def test_close_does_not_wait_out_a_delayed_refill(stock, monkeypatch):
    s, taken = stock
    s.take()
    _ready(s, 2)
    monkeypatch.setattr(stems, "REFILL_DELAY", 60.0)
    taken.append(_take_ready(s))
    time.sleep(0.05)
    assert s._filling is not None and _stock(s) == 1  # the refill waits
    started = time.monotonic()
    s.close()  # ...and close ends that wait at once, with no stem forked
    assert time.monotonic() - started < 5
    assert _stock(s) == 0 and not s._filling
