"""Helpers for the code-interpreter suite: the official `e2b-code-interpreter` SDK against a real
`sandlot serve` (support.py holds those every suite shares). A black-box suite: nothing here
imports sandlot."""

from __future__ import annotations

import base64
import re
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


# Kernel code that opens the driver's stdout (the pipe the control plane reads) as `pipe`. The pipe
# is the control plane's: its /proc/<pid>/fd link cannot be opened from the sandbox, but a process of
# the driver's own uid can take a copy with pidfd_getfd, so the control plane must not trust it.
DRIVER_STDOUT = (
    "import ctypes, os\n"
    "_libc = ctypes.CDLL(None, use_errno=True)\n"
    "_fd = _libc.syscall(438, os.pidfd_open(os.getppid()), 1, 0)  # pidfd_getfd(driver, stdout)\n"
    "if _fd < 0:\n"
    "    raise OSError(ctypes.get_errno(), 'pidfd_getfd')\n"
    "pipe = os.fdopen(_fd, 'w')\n"
)
