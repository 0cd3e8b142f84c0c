"""Seccomp filter for sandboxes, built from policy.DENIED_SYSCALLS with pyseccomp (libseccomp)."""

from __future__ import annotations

import errno
import functools
import os

from .policy import ALLOWED_NETLINK_PROTOCOLS, ALLOWED_SOCKET_FAMILIES, DENIED_SYSCALLS

CLONE_NEWUSER = 0x10000000
AF_NETLINK = 16
# Past the highest family/netlink protocol the kernel knows (AF_MAX 46, MAX_LINKS 32 in 6.x); a
# value with bits above the low 32 set is caught by the same >= rule.
FAMILY_LIMIT = 64
NETLINK_PROTOCOL_LIMIT = 32
TIOCSTI = 0x5412  # push bytes into another terminal's input queue: a classic escape


@functools.lru_cache(maxsize=1)
def filter_bpf() -> bytes:
    """Return the compiled BPF program (cached: the policy is static)."""
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):  # not a syscall on this architecture
            continue
    # New user namespaces through clone/clone3 would hand out a fresh full capability set.
    f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # libc falls back to clone, which we can inspect
    f.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    # libseccomp takes one comparison per argument in a rule: "not one of the allowed families" is
    # a rule per refused value, and one for everything past them.
    no_family = sc.ERRNO(errno.EAFNOSUPPORT)
    for call in ("socket", "socketpair"):
        for family in set(range(FAMILY_LIMIT)) - set(ALLOWED_SOCKET_FAMILIES.values()):
            f.add_rule(no_family, call, sc.Arg(0, sc.EQ, family))
        f.add_rule(no_family, call, sc.Arg(0, sc.GE, FAMILY_LIMIT))
    no_protocol = sc.ERRNO(errno.EPROTONOSUPPORT)
    for protocol in set(range(NETLINK_PROTOCOL_LIMIT)) - set(ALLOWED_NETLINK_PROTOCOLS.values()):
        f.add_rule(no_protocol, "socket", sc.Arg(0, sc.EQ, AF_NETLINK), sc.Arg(2, sc.EQ, protocol))
    f.add_rule(no_protocol, "socket", sc.Arg(0, sc.EQ, AF_NETLINK), sc.Arg(2, sc.GE, NETLINK_PROTOCOL_LIMIT))
    r, w = os.pipe()
    try:
        with os.fdopen(w, "wb") as out:
            f.export_bpf(out)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(r)


def filter_fd() -> int:
    """A readable fd holding the BPF program, for bwrap's --seccomp (the caller closes it)."""
    fd = os.memfd_create("sandlot-seccomp", 0)
    os.write(fd, filter_bpf())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
