"""The one error root of sandlot.

    SandlotError
    ├── InvalidArgument          bad input from the caller (HTTP 400)
    │   └── PathError            a path that is malformed or escapes where it may go
    ├── AuthenticationError      missing, wrong or revoked API key / access token (401)
    ├── PermissionDenied         the caller may not do this (403)
    ├── NotFound                 unknown sandbox, template, process, file (404)
    │   └── FileNotFound
    ├── AlreadyExists            (409)
    ├── SandboxNotRunning        the sandbox was killed, expired or is paused (502 on sandbox routes)
    ├── SandlotTimeoutError      a deadline passed (504); also a builtin TimeoutError.
    │                            `TimeoutError` is its E2B-style alias
    ├── ResourceExhausted        limits, quotas, no space (429/507)
    ├── CommandExitError         a command ended with a non-zero exit code (client side)
    ├── McpGatewayError          create(mcp=...) could not start the MCP gateway (client side)
    ├── RuntimeFailure           the isolation runtime failed to do its job (500)
    ├── Unsupported              this server cannot do that at all, e.g. pause without cgroups (501)
    └── TemplateError            a template could not be built or found
        └── TemplateBuilding     the template is being built: retry (503, with its progress)
Each layer translates the errors of the layer below into these; nothing else crosses a boundary.
"""

from __future__ import annotations

import builtins
from typing import Any


class SandlotError(Exception):
    """Root of every error sandlot raises."""

    status = 500
    code = "internal"  # Connect code name

    def __init__(self, message: str = "", **details: Any):
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidArgument(SandlotError):
    """The request is malformed or a value is out of range."""

    status, code = 400, "invalid_argument"


class PathError(InvalidArgument):
    """A path is malformed, or points outside where it is allowed to."""


class AuthenticationError(SandlotError):
    """No credentials, or credentials that do not match."""

    status, code = 401, "unauthenticated"


class PermissionDenied(SandlotError):
    """The caller is known but may not do this."""

    status, code = 403, "permission_denied"


class NotFound(SandlotError):
    """The named sandbox, template, process or file does not exist."""

    status, code = 404, "not_found"


class FileNotFound(NotFound):
    """The path does not exist inside the sandbox."""


class AlreadyExists(SandlotError):
    status, code = 409, "already_exists"


class SandboxNotRunning(SandlotError):
    """The sandbox was killed, reached its end of life, or is paused."""

    status, code = 502, "unavailable"


class SandlotTimeoutError(SandlotError, builtins.TimeoutError):
    """A deadline passed before the work finished: a command's or a code run's `timeout`, a
    `request_timeout`, a server that did not answer. Also a builtin TimeoutError, so
    `except TimeoutError` catches it whether or not `sandlot.TimeoutError` shadows the builtin."""

    status, code = 504, "deadline_exceeded"


TimeoutError = SandlotTimeoutError  # noqa: A001 - the E2B SDK's name, kept as an alias


class ResourceExhausted(SandlotError):
    """A limit was hit: pool size, disk space, rate."""

    status, code = 429, "resource_exhausted"


class RuntimeFailure(SandlotError):
    """The isolation runtime could not create, run or clean up a sandbox."""

    status, code = 500, "internal"


class Unsupported(SandlotError):
    """The operation exists but this server cannot perform it (e.g. pausing needs cgroups). Not a
    500: nothing failed, and retrying will not help; not a 409, which E2B's SDK reads as "already paused"."""

    status, code = 501, "unimplemented"


class TemplateError(SandlotError):
    """A template could not be built, or its root filesystem is unusable."""

    status, code = 500, "internal"


class TemplateBuilding(TemplateError):
    """A create needs a template that is being built (a first use takes minutes). Nothing was
    created; retry later. `details`: `template`, `progress` (percent), `step`. The sandlot SDK
    waits and retries by itself, reporting the progress on the `sandlot` logger."""

    status, code = 503, "unavailable"


class CommandExitError(SandlotError):
    """A command finished with a non-zero exit code; carries its result."""

    status, code = 400, "failed_precondition"

    def __init__(self, stdout: str, stderr: str, exit_code: int, error: str | None = None):
        super().__init__(f"command exited with code {exit_code}: {stderr.strip()[-500:] or error or ''}")
        self.stdout, self.stderr, self.exit_code, self.error = stdout, stderr, exit_code, error


class McpGatewayError(SandlotError):
    """`create(mcp=...)`: the MCP gateway did not start in the new sandbox (a server failed to
    install or start, a catalog server, a bad configuration), so the sandbox was killed. The
    message has the gateway's reason; `details`: `stderr`, `exit_code`, `sandbox_id`."""


_BY_CODE = {
    "invalid_argument": InvalidArgument,
    "out_of_range": InvalidArgument,
    "unauthenticated": AuthenticationError,
    "permission_denied": PermissionDenied,
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "unavailable": SandboxNotRunning,
    "deadline_exceeded": TimeoutError,
    "resource_exhausted": ResourceExhausted,
    "failed_precondition": InvalidArgument,
    "unimplemented": Unsupported,
}


def from_code(code: str, message: str) -> SandlotError:
    """Rebuild an error from a Connect code name (agent replies, wire errors). The error keeps that
    code even where its class stands for several (``failed_precondition`` is an InvalidArgument), so
    it crosses the next boundary unchanged."""
    err = _BY_CODE.get(code, SandlotError)(message)
    err.code = code
    return err
