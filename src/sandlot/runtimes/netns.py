"""A sandbox's own network namespace, made by its process while still host root (`new_netns`),
and the netlink framing that links.py builds on.

Nothing here imports pyroute2: the stem zygote (zygote.py) loads this module, and every stem it
forks copies the zygote's memory. With pyroute2 loaded the zygote held ~35 MiB, and each fork
copied its page tables and each exec tore them down again.

The namespace belongs to the host's user namespace: root inside the sandbox has no CAP_NET_ADMIN
over its links, routes or firewall, whatever capabilities it holds in its own.
"""

from __future__ import annotations

import os
import socket
import struct

from .. import syscalls

# linux/netlink.h, linux/rtnetlink.h, linux/if.h
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
RTM_NEWLINK = 16
IFF_UP = 1
HDR = struct.Struct("IHHII")  # nlmsghdr: length, type, flags, seq, pid
IFINFO = struct.Struct("BxHiII")  # ifinfomsg: family, type, index, flags, change


def request(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    """nlmsghdr (a request the kernel acks) then `body`: the fixed header and its attributes."""
    return HDR.pack(HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body


def up_body(index: int) -> bytes:
    return IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)


# `ip link set lo up` for the child: it may only make syscalls between fork and exec, so the
# message is built here once.
_LO_UP = request(RTM_NEWLINK, 0, up_body(1), seq=1)
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
        err = struct.unpack_from("i", reply, 16)[0] if HDR.unpack_from(reply)[1] == NLMSG_ERROR else 0
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
