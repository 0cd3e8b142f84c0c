"""Helpers for the E2B compatibility suite (support.py holds those every suite shares).

Imports nothing from sandlot: this directory also runs from a venv that holds only another release
of the official `e2b` SDK (see ./dev test).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import httpx
from e2b import CommandExitException
from e2b.sandbox_sync.sandbox_api import SandboxApi
from packaging.version import Version

# Neither 2.45.1 nor 2.63.0 defines `e2b.__version__`: ask the installed distribution instead.
SDK_VERSION = Version(version("e2b"))
# Whether `Sandbox.create(secure=...)` reaches the server: the 2.4x line sends it, later lines accept
# the argument and drop it (every sandbox secured).
SDK_SENDS_SECURE = "secure" in inspect.signature(SandboxApi._create_sandbox).parameters

ENVD_PORT = "49983"
SANDBOX_NOT_FOUND = "The sandbox was not found"


def envd_headers(sandbox_id: str | None, token: str | None = None, **extra: str) -> dict[str, str]:
    """The routing (and optionally auth) headers the SDK puts on envd requests (docs/e2b.md §1.3)."""
    headers = {"E2b-Sandbox-Port": ENVD_PORT}
    if sandbox_id is not None:
        headers["E2b-Sandbox-Id"] = sandbox_id
    if token is not None:
        headers["X-Access-Token"] = token
    headers.update(extra)
    return headers


def health(server, sandbox_id: str) -> httpx.Response:
    return httpx.get(f"{server.url}/health", headers=envd_headers(sandbox_id), timeout=30)


def assert_sandbox_gone_health(server, sandbox_id: str) -> None:
    """E2B's proxy answer for a killed/expired sandbox (docs/e2b.md §3.13)."""
    r = health(server, sandbox_id)
    assert r.status_code == 502, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == 502 and body["message"] == SANDBOX_NOT_FOUND, body


def assert_json_error(r: httpx.Response, status: int | tuple[int, ...]) -> dict:
    """An error answer: the expected status and a JSON {"code": int, "message": str} body."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers.get("content-type", "").startswith("application/json"), (r.headers, r.text[:500])
    body = r.json()
    assert isinstance(body, dict), body
    assert body.get("code") == r.status_code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def run(sbx, cmd: str, **kw) -> tuple[int, str, str]:
    """Run a command; (exit code, stdout, stderr) whether it succeeded or not."""
    try:
        r = sbx.commands.run(cmd, **kw)
        return r.exit_code, r.stdout, r.stderr
    except CommandExitException as e:
        return e.exit_code, e.stdout, e.stderr
