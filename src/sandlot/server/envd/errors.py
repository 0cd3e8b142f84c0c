"""How the envd front door reports failures: JSON bodies on HTTP routes, Connect errors on RPCs.

Agent replies carry Connect code names (server/agent_client.py), so an agent's error keeps its code
on both paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.responses import JSONResponse

from ..._exceptions import SandboxNotRunning, SandlotError

# The E2B proxy's wording; the SDK looks for "was not found" to raise SandboxNotRunningException.
SANDBOX_NOT_FOUND = "The sandbox was not found"


def error_response(err: SandlotError, sandbox_id: str = "") -> JSONResponse:
    """`{"code": status, "message": ...}`, or the E2B proxy's 502 body for a sandbox that is gone."""
    if isinstance(err, SandboxNotRunning):
        body = {"sandboxId": err.details.get("sandbox_id", sandbox_id), "message": SANDBOX_NOT_FOUND, "code": 502}
        return JSONResponse(body, status_code=502)
    return JSONResponse({"code": err.status, "message": err.message}, status_code=err.status)


@contextmanager
def as_connect_errors() -> Iterator[None]:
    """Re-raise sandlot errors (agent replies among them) as the Connect error with the same code."""
    try:
        yield
    except SandlotError as e:
        try:
            code = Code(e.code)
        except ValueError:
            code = Code.UNKNOWN
        raise ConnectError(code, e.message) from None
