"""Network namespaces and veth links over netlink (batched sends; flat messages packed with struct,
the nested veth request with pyroute2's message classes).

Measured here: pyroute2's IPRoute calls cost ~0.4-0.5 ms each and an `ip` process ~3 ms; a batch
of messages in one send costs what the kernel does. Encoding a claim's four messages with
pyroute2's classes took ~0.45 ms, more than the kernel's work on them (~0.2 ms); with struct
~20 us. Making a veth pair with one end straight in the sandbox's namespace takes ~2.7 ms; moving
an existing link into a namespace ~20 ms (an RCU grace period), so links are made where they will
live and never moved. Deleting one waits out a grace period too (~20-50 ms): it happens in kill(),
never on a create's path.

A sandbox's namespace is made by its own process (`new_netns`, in the forked child while it is
still host root), so it belongs to the host's user namespace: root inside the sandbox has no
CAP_NET_ADMIN over its links, routes or firewall, whatever capabilities it holds in its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
from pathlib import Path

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .. import syscalls

PEER_NAME = "eth0"
ANSWER_TIMEOUT = 10.0  # seconds for the kernel's answer to a request (it takes ~0.1-50 ms)
IFF_UP = 1
_HDR = struct.Struct("IHHII")
_IFINFO = struct.Struct("BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("HH")  # length, type
IFLA_IFNAME, IFA_ADDRESS, IFA_LOCAL, RTA_OIF, RTA_GATEWAY = 3, 1, 2, 4, 5
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1


def _request(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    """nlmsghdr (a request the kernel acks) then `body`: the fixed header and its attributes."""
    return _HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body


def _up_body(index: int) -> bytes:
    return _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)


# `ip link set lo up` for the child: it may only make syscalls between fork and exec, so the
# message is built here once.
_LO_UP = _request(RTM_NEWLINK, 0, _up_body(1), seq=1)
# Per-namespace settings of a sandbox's own namespace (written from inside it), under sys/net of a
# procfs. Each network namespace has a "net" directory of its own under a procfs's sys, and in
# one procfs all of them sit on one dentry hash chain (the parent and the name are the same): in
# the host's /proc the first lookup of a path in a new namespace walked one entry per namespace on
# the host (`proc_sys_compare`: 4.5% of the machine while creating with 1800-2000 alive, with the
# three paths looked up from one "net" fd). So they are written through a procfs made for the
# purpose (~60 us), a detached mount that only this namespace's lookups ever fill.
PROC_ATTRS = syscalls.MOUNT_ATTR_NOSUID | syscalls.MOUNT_ATTR_NODEV | syscalls.MOUNT_ATTR_NOEXEC
NETNS_SYSCTLS = (
    # root inside holds CAP_NET_BIND_SERVICE in its own user namespace only, which does not count
    # in a namespace the host owns: let every uid bind low ports there (Docker does the same)
    ("ipv4/ip_unprivileged_port_start", b"0"),
    # ICMP echo sockets (ping) for every group: raw sockets stay refused (no CAP_NET_RAW)
    ("ipv4/ping_group_range", b"0 2147483647"),
    # IPv4 only: links made later (eth0) get no IPv6; loopback keeps ::1
    ("ipv6/conf/default/disable_ipv6", b"1"),
)


def new_netns() -> None:
    """In a forked child that is still host root: a network namespace of its own with loopback up.
    Only syscalls (no imports, no allocation worth naming); raises OSError."""
    syscalls.unshare(syscalls.CLONE_NEWNET)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        s.send(_LO_UP)
        reply = s.recv(4096)
        err = struct.unpack_from("i", reply, 16)[0] if _HDR.unpack_from(reply)[1] == NLMSG_ERROR else 0
        if err:
            raise OSError(-err, "could not bring loopback up")
    finally:
        s.close()
    try:
        proc = syscalls.new_mount("proc", PROC_ATTRS)
    except OSError:  # a host where a new procfs is refused (a container's masked /proc): the shared one
        net = os.open("/proc/sys/net", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        try:
            net = os.open("sys/net", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
        finally:
            os.close(proc)
    try:
        for path, value in NETNS_SYSCTLS:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=net)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
    finally:
        os.close(net)


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
        return seq, _request(kind, flags, body, seq)

    def _named(self, kind: int, name: str) -> tuple[int, bytes]:
        """A request about the link called `name` (GETLINK, DELLINK)."""
        return self._packed(kind, 0, _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0"))

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
            while off + _HDR.size <= len(data):
                length, kind, _flags, seq, _ = _HDR.unpack_from(data, off)
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
        return self._packed(RTM_NEWLINK, 0, _up_body(index))

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
        return _IFINFO.unpack_from(got[0], _HDR.size)[2:4]

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
