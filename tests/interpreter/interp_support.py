"""Helpers for the code-interpreter suite: the official `e2b-code-interpreter` SDK against a real
`sandlot serve` (support.py holds those every suite shares). A black-box suite: nothing here
imports sandlot."""

from __future__ import annotations

import base64
import ctypes
import os
import re
import time
from importlib.metadata import version


SDK_VERSION = version("e2b-code-interpreter")
E2B_VERSION = version("e2b")

JUPYTER_PORT = "49999"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """A traceback without its terminal colours."""
    return _ANSI.sub("", text)


def png_bytes(b64: str | None) -> bytes:
    assert b64, "expected a base64 PNG"
    raw = base64.b64decode(b64, validate=True)
    assert raw.startswith(PNG_MAGIC), raw[:16]
    return raw


def main_results(execution) -> list:
    return [r for r in execution.results if r.is_main_result]


def display_results(execution) -> list:
    return [r for r in execution.results if not r.is_main_result]


def stdout(execution) -> str:
    return "".join(execution.logs.stdout)


def stderr(execution) -> str:
    return "".join(execution.logs.stderr)


def ok(execution):
    """The execution, asserting it raised nothing."""
    assert execution.error is None, (execution.error.name, execution.error.value, plain(execution.error.traceback))
    return execution


def jupyter_headers(sandbox_id: str, token: str | None = None, **extra: str) -> dict[str, str]:
    """The headers the SDK puts on code-interpreter requests (port 49999)."""
    headers = {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": JUPYTER_PORT}
    if token is not None:
        headers["X-Access-Token"] = token
    headers.update(extra)
    return headers


# Code in the sandbox cannot reach the driver's stdout, the pipe the control plane reads (the
# pipe is host root's, the driver is not dumpable, pidfd_getfd is denied: test_interp_lifecycle).
# These helpers play a driver taken over anyway, from the host, to show that the control plane does
# not trust what comes on that pipe (the sandbox's root can start its own program in the driver's
# place: test_interp_forged_driver.py).
KERNEL_DRIVER = b"kernels/driver.py"
SYS_PIDFD_GETFD = 438


def driver_pid(sandbox_id: str) -> int:
    """The host pid of the sandbox's code-interpreter driver (found by its cgroup)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry.name}/cgroup") as f:
                cgroups = f.read()
        except OSError:
            continue
        if KERNEL_DRIVER in cmdline and f"/{sandbox_id}\n" in cgroups:
            return int(entry.name)
    raise AssertionError(f"no code-interpreter driver runs in sandbox {sandbox_id}")


def driver_stdout(sandbox_id: str) -> int:
    """A non-blocking fd on the driver's stdout, taken from the host (root may, with pidfd_getfd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pidfd = os.pidfd_open(driver_pid(sandbox_id))
    try:
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, 1, 0)
    finally:
        os.close(pidfd)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_getfd")
    os.set_blocking(fd, False)
    return fd


def wait_for_file(sbx, path: str, timeout: float = 60) -> None:
    """Until a run in progress has made `path` (so the control plane knows that run by now)."""
    deadline = time.monotonic() + timeout
    while not sbx.files.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def write_until(fd: int, data: bytes, done) -> int:
    """Write `data` to `fd` until it is all written, the reader is gone, or `done()`; bytes written."""
    written = 0
    while written < len(data) and not done():
        try:
            written += os.write(fd, data[written:written + (1 << 16)])
        except BlockingIOError:
            time.sleep(0.001)
        except BrokenPipeError:
            break
    return written
