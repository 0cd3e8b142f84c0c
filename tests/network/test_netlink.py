"""runtimes/links.py's Netlink used from many threads at once, as the server does (a pool's refill,
creates and kills each make or delete links in threads of their own). Each message must carry the
number its thread waits for: crossed numbers left a thread waiting forever for an answer that had
come with another number (seen as a server whose stop hung in a pool refill). No sandbox needed:
the host's loopback is asked about. The messages a claim sends are packed with struct (pyroute2's
classes took ~0.45 ms to encode them): they must be the bytes pyroute2 makes."""

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

        for _ in range(3000):
            seq, data = netlink._named(RTM_GETLINK, "lo")
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


def test_packed_messages_are_the_bytes_pyroute2_encodes():
    import itertools
    import socket

    from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL
    from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    netlink = Netlink()
    pairs = [
        (lambda: netlink._named(RTM_GETLINK, "eth0"),
         lambda: netlink._msg(ifinfmsg, RTM_GETLINK, 0, {}, [("IFLA_IFNAME", "eth0")])),
        (lambda: netlink._named(RTM_DELLINK, "sl-v123"),  # a name whose attribute needs padding
         lambda: netlink._msg(ifinfmsg, RTM_DELLINK, 0, {}, [("IFLA_IFNAME", "sl-v123")])),
        (lambda: netlink._up(7),
         lambda: netlink._msg(ifinfmsg, RTM_NEWLINK, 0, {"index": 7, "flags": 1, "change": 1}, [])),
        (lambda: netlink._address(7, "10.11.12.13/30"),
         lambda: netlink._msg(ifaddrmsg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                              {"index": 7, "family": socket.AF_INET, "prefixlen": 30},
                              [("IFA_LOCAL", "10.11.12.13"), ("IFA_ADDRESS", "10.11.12.13")])),
        (lambda: netlink._default_route(7, "10.11.12.14"),
         lambda: netlink._msg(rtmsg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                              {"family": socket.AF_INET, "dst_len": 0, "table": 254, "proto": 4, "scope": 0,
                               "type": 1}, [("RTA_GATEWAY", "10.11.12.14"), ("RTA_OIF", 7)])),
    ]
    for packed, encoded in pairs:
        netlink._seq = itertools.count(41)
        mine = packed()
        netlink._seq = itertools.count(41)
        assert mine == encoded()
