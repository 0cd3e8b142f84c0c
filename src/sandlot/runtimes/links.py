"""Network namespaces and veth links over netlink (batched sends; flat messages packed with struct,
the nested veth request with pyroute2's message classes).

Measured here: pyroute2's IPRoute calls cost ~0.4-0.5 ms each and an `ip` process ~3 ms; a batch
of messages in one send costs what the kernel does. Encoding a claim's four messages with
pyroute2's classes took ~0.45 ms, more than the kernel's work on them (~0.2 ms); with struct
~20 us. Making a veth pair with one end straight in the sandbox's namespace takes ~2.7 ms; moving
an existing link into a namespace ~20 ms (an RCU grace period), so links are made where they will
live and never moved. Deleting one waits out a grace period too (~20-50 ms): it happens in kill(),
never on a create's path.

A sandbox's namespace is made by its own process (netns.py), so it belongs to the host's user
namespace: root inside the sandbox has no CAP_NET_ADMIN over its links, routes or firewall,
whatever capabilities it holds in its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
from pathlib import Path

from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .. import syscalls
from .netns import HDR, IFF_UP, IFINFO, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, RTM_NEWLINK, request, up_body

PEER_NAME = "eth0"
ANSWER_TIMEOUT = 10.0  # seconds for the kernel's answer to a request (it takes ~0.1-50 ms)
_IFADDR = struct.Struct("BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("HH")  # length, type
IFLA_IFNAME, IFA_ADDRESS, IFA_LOCAL, RTA_OIF, RTA_GATEWAY = 3, 1, 2, 4, 5
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1


# The server's own namespace, the host's: taken at import, before any thread has entered another.
_HOST_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def entered(netns_fd: int):
    """The calling thread inside the network namespace of `netns_fd`, and back (~5 µs). Sockets
    made inside stay there: that is how the host reaches into a sandbox (its links here, its ports
    for the proxy), and nothing else of the thread's changes."""
    syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
    try:
        yield
    finally:
        # failing to come back would leave a server thread in a sandbox: never carry on
        try:
            syscalls.setns(_HOST_NETNS, syscalls.CLONE_NEWNET)
        except OSError:  # pragma: no cover
            os.abort()


def socket_in(netns_fd: int, family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking TCP socket in the namespace of `netns_fd` (connect it from anywhere)."""
    with entered(netns_fd):
        return socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)


class Netlink:
    """Batched rtnetlink requests in the host's namespace or a sandbox's."""

    def __init__(self) -> None:
        # one counter for every thread: next() on it is atomic, and each message keeps the number
        # it drew (re-reading a shared attribute let two threads' messages cross, and a thread
        # then waited forever for an answer that had come with another number)
        self._seq = itertools.count(1)

    def close(self) -> None:
        pass

    def socket(self, netns_fd: int | None = None) -> socket.socket:
        if netns_fd is None:
            return self._socket()
        with entered(netns_fd):
            return self._socket()

    @staticmethod
    def _socket() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        s.bind((0, 0))
        s.settimeout(ANSWER_TIMEOUT)  # a missing answer fails the call instead of holding its thread
        return s

    def _packed(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        """A request: nlmsghdr with its own sequence number, then `body` (fixed header and attrs)."""
        seq = next(self._seq) & 0x7FFFFFFF
        return seq, request(kind, flags, body, seq)

    def _named(self, kind: int, name: str) -> tuple[int, bytes]:
        """A request about the link called `name` (GETLINK, DELLINK)."""
        return self._packed(kind, 0, IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0"))

    def _address(self, index: int, cidr: str) -> tuple[int, bytes]:
        addr, plen = cidr.split("/")
        ip = socket.inet_aton(addr)
        return self._packed(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, _IFADDR.pack(socket.AF_INET, int(plen), 0, 0, index)
                            + _attr(IFA_LOCAL, ip) + _attr(IFA_ADDRESS, ip))

    def _default_route(self, index: int, gateway: str) -> tuple[int, bytes]:
        return self._packed(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                            _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST, 0)
                            + _attr(RTA_GATEWAY, socket.inet_aton(gateway)) + _attr(RTA_OIF, struct.pack("I", index)))

    def _msg(self, cls, kind: int, flags: int, fields: dict, attrs: list) -> tuple[int, bytes]:
        """A request encoded by pyroute2's message class `cls` (nested attributes: a veth's peer)."""
        m = cls()
        for k, v in fields.items():
            m[k] = v
        m["attrs"] = attrs
        seq = next(self._seq) & 0x7FFFFFFF
        m["header"]["type"] = kind
        m["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        m["header"]["sequence_number"] = seq
        m.encode()
        return seq, bytes(m.data)

    def run(self, sock: socket.socket, msgs: list[tuple[int, bytes]], replies: bool = False) -> list[bytes]:
        """Send the messages in one go; wait for each one's answer. Raises OSError for the first
        refusal (the kernel has applied the ones before it). With `replies`, returns the non-ack
        messages received (a GETLINK's answer)."""
        sock.send(b"".join(data for _, data in msgs))
        waiting = {seq for seq, _ in msgs}
        got = []
        error = None
        while waiting:
            data = sock.recv(65536)
            off = 0
            while off + HDR.size <= len(data):
                length, kind, _flags, seq, _ = HDR.unpack_from(data, off)
                if kind == NLMSG_ERROR:
                    err = struct.unpack_from("i", data, off + 16)[0]
                    waiting.discard(seq)
                    if err and error is None:
                        error = OSError(-err, os.strerror(-err))
                elif seq in waiting:
                    got.append(data[off:off + length])
                off += (length + 3) & ~3
        if error is not None:
            raise error
        return got

    # ---- what the runtime does with them -----------------------------------------------------

    def add_veth(self, name: str, netns_fd: int, host_cidr: str) -> None:
        """A veth pair: `name` here with `host_cidr` and up, its peer eth0 (down, no address) in the
        sandbox's namespace."""
        with contextlib.closing(self.socket()) as s:
            self.run(s, [self._msg(ifinfmsg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, {}, [
                ("IFLA_IFNAME", name),
                ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [
                    ("VETH_INFO_PEER", {"attrs": [("IFLA_IFNAME", PEER_NAME), ("IFLA_NET_NS_FD", netns_fd)]})]})]}),
            ])])
            index = self.index(name, s)
            self.run(s, [self._address(index, host_cidr), self._up(index)])

    def _up(self, index: int) -> tuple[int, bytes]:
        return self._packed(RTM_NEWLINK, 0, up_body(index))

    def configure_peer(self, netns_fd: int, cidr: str, gateway: str) -> None:
        """eth0 in the sandbox: its address, up, and the default route through the host end
        (nothing to do if it is up already)."""
        with contextlib.closing(self.socket(netns_fd)) as s:
            index, flags = self._link(PEER_NAME, s)  # its index: not always 2, a namespace never reuses one soon
            if flags & IFF_UP:
                return
            self.run(s, [self._address(index, cidr), self._up(index), self._default_route(index, gateway)])

    def index(self, name: str, sock: socket.socket | None = None) -> int:
        with contextlib.ExitStack() as stack:
            if sock is None:
                sock = stack.enter_context(contextlib.closing(self.socket()))
            return self._link(name, sock)[0]

    def _link(self, name: str, sock: socket.socket) -> tuple[int, int]:
        """(index, flags) of a link: read from the answer's fixed ifinfomsg header, not decoded
        whole (pyroute2 decoding every attribute took ~0.6 ms)."""
        got = self.run(sock, [self._named(RTM_GETLINK, name)], replies=True)
        return IFINFO.unpack_from(got[0], HDR.size)[2:4]

    def delete(self, name: str) -> bool:
        """Delete a link of the host's (a veth: both ends). False if there was none."""
        with contextlib.closing(self.socket()) as s:
            try:
                self.run(s, [self._named(RTM_DELLINK, name)])
            except OSError as e:
                if e.errno in (19, 2):  # ENODEV, ENOENT: gone already
                    return False
                raise
        return True


def _attr(kind: int, payload: bytes) -> bytes:
    """An rtattr: its length and type, the payload, padding to 4 bytes."""
    size = _RTATTR.size + len(payload)
    return _RTATTR.pack(size, kind) + payload + bytes(-size % 4)


def host_links(prefix: str) -> list[str]:
    """Names of the host's links starting with `prefix`."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))
    except OSError:
        return []


def link_bytes(name: str) -> tuple[int, int]:
    """(received, sent) bytes of a host link; for a sandbox's host end that is the sandbox's
    (sent, received). (0, 0) if it is gone."""
    base = Path("/sys/class/net") / name / "statistics"
    try:
        return int((base / "rx_bytes").read_text()), int((base / "tx_bytes").read_text())
    except (OSError, ValueError):
        return 0, 0
