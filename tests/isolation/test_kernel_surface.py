"""Kernel surface a hostile sandbox must not reach: other processes' fds, host-wide kernel tables
(AIO contexts), socket families it has no use for (AF_VSOCK took a host port on a VM host)."""

from __future__ import annotations

import errno
import platform
import socket

import pytest
from e2b import PtySize
from test_isolation import run

from sandlot.runtimes.namespace import mount_root

# raw syscall numbers below are x86_64's (pidfd_* are the same everywhere)
pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers for x86_64")

ATTACK = """\
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def report(name, rc):
    print(name, rc, ctypes.get_errno() if rc == -1 else 0, flush=True)
# the log fd sandlot's pid 1 holds: pidfd_getfd would hand root inside a writable copy
pidfd = libc.syscall(434, 1, 0)  # pidfd_open(1)
report("pidfd_open", pidfd)
report("pidfd_getfd", libc.syscall(438, pidfd, 2, 0) if pidfd >= 0 else -1)
report("process_madvise", libc.syscall(440, pidfd, None, 0, 0, 0) if pidfd >= 0 else -1)
ctx = ctypes.c_ulong(0)
report("io_setup", libc.syscall(206, 128, ctypes.byref(ctx)))  # x86_64
# pid 1 (the agent, as the runtime starts it) is not dumpable: its memory and fds stay closed
for name, path, flags in [("pid1_mem", "/proc/1/mem", os.O_RDWR), ("pid1_fd", "/proc/1/fd/2", os.O_WRONLY),
                          ("pid1_environ", "/proc/1/environ", os.O_RDONLY)]:
    try:
        os.close(os.open(path, flags))
        report(name, 0)
    except OSError as e:
        print(name, -1, e.errno, flush=True)
for name, family, kind, proto in [("vsock", 40, socket.SOCK_STREAM, 0), ("packet", 17, socket.SOCK_RAW, 0),
                                  ("bluetooth", 31, socket.SOCK_STREAM, 0), ("alg", 38, socket.SOCK_SEQPACKET, 0),
                                  ("vsock_high_bits", (1 << 32) | 40, socket.SOCK_STREAM, 0),
                                  ("netlink_audit", 16, socket.SOCK_RAW, 9),
                                  ("netlink_route", 16, socket.SOCK_RAW, 0), ("unix", 1, socket.SOCK_STREAM, 0),
                                  ("inet", 2, socket.SOCK_STREAM, 0), ("inet6", 10, socket.SOCK_DGRAM, 0)]:
    fd = libc.syscall(41, ctypes.c_long(family), kind, proto)
    report(name, fd)
    if fd >= 0:
        os.close(fd)
pair = (ctypes.c_int * 2)()
report("socketpair_vsock", libc.syscall(53, 40, socket.SOCK_STREAM, 0, pair))
report("socketpair_unix", libc.syscall(53, 1, socket.SOCK_STREAM, 0, pair))
"""


def _results(out: str) -> dict[str, tuple[int, int]]:
    return {name: (int(rc), int(err)) for name, rc, err in (line.split() for line in out.splitlines())}


def test_a_sandbox_reaches_no_other_process_fds_aio_or_odd_socket_families(make_sandbox):
    sbx = make_sandbox()
    sbx.files.write("/tmp/attack.py", ATTACK)
    code, out = run(sbx, "python3 /tmp/attack.py", user="root")
    got = _results(out)
    assert got["pidfd_open"][0] >= 0, out  # signalling its own processes stays possible
    for name in ("pidfd_getfd", "process_madvise", "io_setup"):
        assert got[name] == (-1, errno.EPERM), f"{name}: {out}"
    for name in ("pid1_mem", "pid1_fd", "pid1_environ"):
        assert got[name] == (-1, errno.EACCES), f"{name}: {out}"
    for name in ("vsock", "packet", "bluetooth", "alg", "vsock_high_bits", "socketpair_vsock"):
        assert got[name] == (-1, errno.EAFNOSUPPORT), f"{name}: {out}"
    assert got["netlink_audit"] == (-1, errno.EPROTONOSUPPORT), out
    for name in ("netlink_route", "unix", "inet", "inet6", "socketpair_unix"):
        assert got[name][0] >= 0, f"{name}: {out}"
    # the programs a sandbox runs still work with what is left
    code, out = run(sbx, "ip -o addr show lo && python3 -c 'import socket; socket.socketpair()'")
    assert code == 0 and "127.0.0.1" in out, out


def test_the_controls_answer_on_the_host():
    """The refusals above are the filter's: on the host the same calls are answered by the kernel."""
    import ctypes
    import os

    if os.path.exists("/dev/vsock"):  # a VM host: the family the sandbox must not reach is there
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9).close()  # NETLINK_AUDIT
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctx = ctypes.c_ulong(0)
    assert libc.syscall(206, 1, ctypes.byref(ctx)) == 0, ctypes.get_errno()  # io_setup
    libc.syscall(207, ctx)  # io_destroy


PTY_HOARD = """
import os
held = []
try:
    while len(held) < 1000:
        held.append(os.openpty())
except OSError as e:
    print(len(held), e.errno)
"""


def test_a_sandbox_cannot_take_the_hosts_terminals(make_sandbox):
    """The kernel's terminals are host-wide (3072 for all containers); one sandbox once took them
    all and a neighbour's pty.create() failed. Each sandbox's /dev/pts is its own, bounded."""
    from sandlot.runtimes.namespace import PTYS_PER_SANDBOX

    hoarder, neighbour = make_sandbox(), make_sandbox()
    hoarder.files.write("/tmp/hoard.py", PTY_HOARD)
    for user in ("user", "root"):
        code, out = run(hoarder, "python3 /tmp/hoard.py", user=user)
        held, err = out.split()
        assert int(held) <= PTYS_PER_SANDBOX and int(err) == errno.ENOSPC, out
    # the neighbour's terminals work, through the API as a user would open one
    terminal = neighbour.pty.create(PtySize(rows=24, cols=80))
    neighbour.pty.kill(terminal.pid)
    code, out = run(neighbour, "python3 -c 'import os; os.openpty(); print(\"ok\")'")
    assert out.strip() == "ok", out
    # a terminal's group inside is tty, as in any Debian system
    code, out = run(hoarder, "python3 -c 'import os; m, s = os.openpty(); print(os.stat(os.ttyname(s)).st_gid)'")
    assert out.strip() == "5", out


def test_mountinfo_names_no_state_path_of_the_server(make_sandbox, server):
    """/proc/self/mountinfo inside shows each mount's options: the overlay's layers are named by
    the fds they were mounted through, not by where the server keeps sandboxes and templates."""
    sbx = make_sandbox()
    code, out = run(sbx, "cat /proc/self/mountinfo", user="root")
    root = next(line for line in out.splitlines() if line.split()[4] == "/")
    assert "lowerdir=/proc/self/fd/" in root and "upperdir=/proc/self/fd/" in root, root
    assert str(server.home.resolve()) not in out and "/sandboxes/" not in out, out
    # nor where it keeps its run directory: the agent's code is on a filesystem of its own
    assert mount_root(server.home).name not in out and "/agent-" in out, out
