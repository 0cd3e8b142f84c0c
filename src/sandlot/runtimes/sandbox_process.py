"""The sandbox's outermost process on the host: how a forked child becomes it (the namespace
runtime's fork path and stems.py's stems both end in `become_sandbox`), and how to tell it from a
process that later got the same pid (`start_ticks`)."""

from __future__ import annotations

import fcntl
import os
import resource
import time

from .. import syscalls
from .interface import RuntimeSandbox
from .policy import BWRAP_ENV


def start_ticks(pid: int) -> int:
    """Process start time in clock ticks; 0 if the process is gone (or a zombie: an orphaned
    bwrap may wait unreaped when the host's pid 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return 0 if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def alive(rt: RuntimeSandbox) -> bool:
    return start_ticks(rt.pid) == rt.started_ticks


def become_sandbox(base: int, log_fd: int, seccomp_fd: int, ready_w: int, go_r: int, args_fd: int,
                   agent_ready_w: int, bwrap: str, command: list[str], fsize: int) -> None:
    """In a new child (forked now, or a stem): become the sandbox's uid base in a new user
    namespace, tell the parent (which then maps uids and mounts), wait for its go, exec bwrap.
    Only syscalls; never returns (the caller _exits if this raises)."""
    # fds 0-7 get fixed roles; park every source above them first, so no dup2 overwrites a
    # source still to be placed (in a small process they are low numbers).
    null = os.open("/dev/null", os.O_RDONLY)
    sources = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64)
               for fd in (null, log_fd, log_fd, seccomp_fd, ready_w, go_r, args_fd, agent_ready_w)]
    for target, fd in enumerate(sources):
        os.dup2(fd, target)
    os.closerange(8, 65536)
    os.set_inheritable(3, True)
    os.set_inheritable(6, True)
    os.set_inheritable(7, True)  # contract.READY_FD: the agent says it listens
    # The sandbox's disk bounds the total (disk.py); no file grows past disk_mb either (RLIMIT_FSIZE,
    # soft = hard; raising a hard limit takes CAP_SYS_RESOURCE on the host, which nothing inside has).
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    os.setgroups([])
    os.setresgid(base, base, base)
    os.setresuid(base, base, base)
    syscalls.unshare(syscalls.CLONE_NEWUSER)
    os.write(4, b"1")
    if os.read(5, 1) != b"1":
        os._exit(1)
    os.close(4)
    os.close(5)
    boot_clock_from_now()
    os.execve(bwrap, command, BWRAP_ENV)


def boot_clock_from_now() -> None:
    """A time namespace whose boot clock starts now: /proc/uptime inside counts from the sandbox's
    start, as in a machine that just booted (a filesystem-mode resume is a cold boot). The exec
    that follows enters it (Linux >= 5.11); without time namespaces the host's uptime shows."""
    try:
        syscalls.unshare(syscalls.CLONE_NEWTIME)
        now = int(time.clock_gettime(time.CLOCK_BOOTTIME))
        syscalls.set_dumpable(True)  # for its own /proc/self/timens_offsets; exec sets it anew
        fd = os.open("/proc/self/timens_offsets", os.O_WRONLY)
        try:
            os.write(fd, f"boottime {-now} 0\n".encode())
        finally:
            os.close(fd)
            syscalls.set_dumpable(False)
    except OSError:
        pass
