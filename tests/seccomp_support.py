"""Probing a sandbox's seccomp filter: a script that makes the calls it must deny and reports each
call's result, and the control run on the host that shows the kernel would answer them otherwise."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

# Each call's arguments make the kernel itself answer something other than EPERM (EFAULT for bad
# pointers, success, ENOSYS without module support), so EPERM means the seccomp filter stopped it
# (the host control run in the test shows which calls the kernel would answer differently).
SYSCALLS_SCRIPT = """\
import ctypes, os, platform, signal, subprocess
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"x86_64": dict(bpf=321, perf_event_open=298, ptrace=101, init_module=175, keyctl=250),
      "aarch64": dict(bpf=280, perf_event_open=241, ptrace=117, init_module=105, keyctl=219)}[platform.machine()]
NR["io_uring_setup"] = 425  # the same on every architecture (the unified table of newer syscalls)
def report(name, rc):
    print(name, rc, ctypes.get_errno() if rc == -1 else 0, flush=True)
# ours: ptrace needs no privilege to attach to it. It must not hold our stdout: if it stays stopped
# by the attach, the caller would wait on the pipe.
child = subprocess.Popen(["sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
report("bpf", libc.syscall(NR["bpf"], 0, ctypes.c_void_p(1), 64))
report("perf_event_open", libc.syscall(NR["perf_event_open"], None, 0, -1, -1, 0))
report("ptrace", libc.syscall(NR["ptrace"], 16, child.pid, None, None))  # PTRACE_ATTACH
report("init_module", libc.syscall(NR["init_module"], None, 0, b""))
report("keyctl", libc.syscall(NR["keyctl"], 0, -3, 0))  # the session keyring's id
report("unshare", libc.unshare(0x10000000))  # CLONE_NEWUSER
report("mount", libc.mount(ctypes.c_void_p(1), b"/mnt", b"tmpfs", 0, None))
report("io_uring_setup", libc.syscall(NR["io_uring_setup"], 1, None))  # EFAULT: no params
os.kill(child.pid, signal.SIGKILL)  # not child.kill(): its poll() takes the ptrace stop for an exit
"""
SYSCALLS = {"bpf", "perf_event_open", "ptrace", "init_module", "keyctl", "unshare", "mount", "io_uring_setup"}


def syscall_results(out: str) -> dict[str, tuple[int, int]]:
    results = {name: (int(rc), int(err)) for name, rc, err in (line.split() for line in out.splitlines())}
    assert set(results) == SYSCALLS, out
    return results


def _io_uring_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() == "0"
    except OSError:  # kernels before 6.6 have no switch
        return True


def assert_the_host_answers_them() -> None:
    """The control: an unprivileged host process without the filter gets no EPERM from these calls."""
    host = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                           "-c", SYSCALLS_SCRIPT], capture_output=True, text=True, timeout=60, cwd="/")
    host_results = syscall_results(host.stdout)
    # bpf and init_module may meet an EPERM of the kernel's own first (older kernels, or a kernel with
    # modules); the others answer otherwise on any kernel
    answered = {"perf_event_open", "ptrace", "keyctl", "unshare", "mount"}
    if _io_uring_enabled():  # else the kernel itself says EPERM (sysctl kernel.io_uring_disabled)
        answered.add("io_uring_setup")
    assert {n for n, (_, err) in host_results.items() if err != errno.EPERM} >= answered, host.stdout
