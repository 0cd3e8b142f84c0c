"""runtimes/links.py's Netlink used from many threads at once, as the server does (a pool's refill,
creates and kills each make or delete links in threads of their own). Each message must carry the
number its thread waits for: crossed numbers left a thread waiting forever for an answer that had
come with another number (seen as a server whose stop hung in a pool refill). No sandbox needed:
the host's loopback is asked about."""

from __future__ import annotations

import os
import struct
import sys
import threading
import time

import pytest

from sandlot.runtimes.links import Netlink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="netlink requests as the server makes them")


def test_requests_from_many_threads_each_get_their_answer():
    netlink = Netlink()
    answers, numbers, failures = [], [], []

    def ask():
        try:
            for _ in range(300):
                answers.append(netlink.index("lo"))
        except Exception as e:  # a timeout or a wrong answer: reported below
            failures.append(e)

    def draw():
        from pyroute2.netlink.rtnl import RTM_GETLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        for _ in range(3000):
            seq, data = netlink._msg(ifinfmsg, RTM_GETLINK, 0, {}, [("IFLA_IFNAME", "lo")])
            numbers.append((seq, struct.unpack_from("IHHII", data)[3]))

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: the race shows at once
    try:
        threads = [threading.Thread(target=ask, daemon=True) for _ in range(6)]
        threads += [threading.Thread(target=draw, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        sys.setswitchinterval(before)
    assert not any(t.is_alive() for t in threads), "a thread still waits for its answer"
    assert not failures, failures[:3]
    assert answers == [1] * 1800  # loopback's index, to every request
    assert all(seq == carried for seq, carried in numbers)
    assert len({seq for seq, _ in numbers}) == len(numbers)
