"""Which sandbox an envd request is for, and the seam the control plane fills in (docs/e2b.md §1.3, §3.13).

Requests carry `E2b-Sandbox-Id`. Without it (SDK 2.0–2.25 after `connect()`, signed URLs fetched
by other tools) the sandbox is inferred: the only running one if it has an access token, else the
one whose access token the request's credentials prove; a sandbox without a token must be named.
An unknown, killed or paused sandbox answers 502 like E2B's proxy, so the SDK's `is_running()`
turns False and failed calls become `SandboxNotRunningException`. A paused one says so (and how to
resume it) to a caller holding its access token, its message still containing the "was not found"
the e2b SDK looks for.

Teams play no part here: the access token (or a URL signed with it) is the credential, and only
the sandbox's own team is ever handed it (teams.py). The gate notes the sandbox and its team for
the audit trail, also when it refuses a request that named a running sandbox.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..._exceptions import AuthenticationError, InvalidArgument, SandboxNotRunning, SandlotError
from ..request_info import request_info
from .auth import SIGNATURE_EXPIRED, UNAUTHORIZED, Policy, require_token_or_traffic_token
from .errors import error_response

if TYPE_CHECKING:
    from ..agent_client import AgentClient
    from ..code_contexts import KernelSession
    from ..throttle import ByteRate

SANDBOX_ID_HEADER = "e2b-sandbox-id"


class Closing(asyncio.Event):
    """A sandbox's `closed`: an Event that also calls back when set, so a stream waits on it with
    a callback, not a task of its own (a task per command was ~5% of the server's CPU for one)."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: set[Callable[[], None]] = set()

    def set(self) -> None:
        super().set()
        callbacks, self._callbacks = self._callbacks, set()
        for callback in callbacks:
            callback()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the loop, once) when this is set; never if it is set already."""
        self._callbacks.add(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.discard(callback)


class SandboxHandle(Protocol):
    """A running sandbox as the front door sees it."""

    @property
    def id(self) -> str: ...
    @property
    def access_token(self) -> str | None: ...  # envd access token; None admits every caller
    @property
    def default_user(self) -> str: ...  # user for requests that name none
    @property
    def agent(self) -> AgentClient: ...
    @property
    def closed(self) -> Closing: ...  # set on kill or pause: open streams end
    @property
    def kernels(self) -> KernelSession | None: ...  # code contexts; None if the template has none
    @property
    def output_rate(self) -> ByteRate | None: ...  # bounds the command output relayed (None: unbounded)
    # and, optionally, `team`: the owning team's id (for the audit trail)


class SandboxLookup(Protocol):
    def get_running(self, sandbox_id: str) -> SandboxHandle | None: ...
    def running(self) -> Iterable[SandboxHandle]: ...
    @property
    def paused(self) -> Mapping[str, SandboxHandle]: ...
    # and, optionally, `async wake(sandbox_id)`: resume a paused sandbox that asked for auto-resume


_current: contextvars.ContextVar[SandboxHandle] = contextvars.ContextVar("envd_sandbox")


def current_sandbox() -> SandboxHandle:
    """The sandbox of the request being served (set by SandboxGate; Connect handlers only get a ctx)."""
    return _current.get()


class SandboxGate:
    """ASGI middleware: routes the request to its sandbox and applies an access policy."""

    def __init__(self, app: ASGIApp, lookup: SandboxLookup, policy: Policy):
        self.app, self.lookup, self.policy = app, lookup, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = HTTPConnection(scope)
        info = request_info(scope)
        await self._wake(scope, request)
        try:
            sandbox = find_sandbox(self.lookup, request, self.policy)
        except SandlotError as e:
            if isinstance(e, AuthenticationError) and (named := request.headers.get(SANDBOX_ID_HEADER)):
                refused = self.lookup.get_running(named)
                info.sandbox_id, info.team = named, getattr(refused, "team", None)
            response = _paused(e) if e.details.get("paused") else error_response(e)
            return await response(scope, receive, send)
        info.sandbox_id, info.team = sandbox.id, getattr(sandbox, "team", None)
        reset = _current.set(sandbox)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(reset)

    async def _wake(self, scope: Scope, request: HTTPConnection) -> None:
        """Auto-resume (server/lifecycle.py): a paused sandbox the request names and would be let
        into resumes first. Not on /health: is_running() must not wake a sandbox."""
        wake = getattr(self.lookup, "wake", None)
        named = request.headers.get(SANDBOX_ID_HEADER)
        if wake is None or not named or scope["path"] == "/health":
            return
        paused = self.lookup.paused.get(named)
        if paused is None:
            return
        if paused.access_token is not None:
            try:
                self.policy(paused.access_token, request)
            except AuthenticationError:
                return  # refused as usual by find_sandbox
        await wake(named)


def find_sandbox(lookup: SandboxLookup, request: HTTPConnection, policy: Policy) -> SandboxHandle:
    sandbox_id = request.headers.get(SANDBOX_ID_HEADER)
    if sandbox_id:
        sandbox = lookup.get_running(sandbox_id)
        if sandbox is None:
            paused = lookup.paused.get(sandbox_id)
            # only a caller holding its token learns more than of an unknown sandbox
            if paused is not None and (paused.access_token is None
                                       or _proves(require_token_or_traffic_token, paused.access_token, request)):
                raise SandboxNotRunning(f"sandbox {sandbox_id} is paused", sandbox_id=sandbox_id, paused=True)
            raise SandboxNotRunning(f"sandbox {sandbox_id} is not running", sandbox_id=sandbox_id)
    else:
        sandbox = _infer(list(lookup.running()), request, policy)
    if sandbox.access_token is not None:
        policy(sandbox.access_token, request)
    return sandbox


def _paused(err: SandboxNotRunning) -> JSONResponse:
    """E2B's 502 for a sandbox that is gone, worded for a paused one (the e2b SDK still reads it as
    not running); `state` lets clients tell the two apart without parsing the message."""
    sid = err.details["sandbox_id"]
    message = (f"sandbox {sid} is paused (it was not found running): resume it with "
               f"Sandbox.connect(\"{sid}\") or sandbox.resume()")
    return JSONResponse({"sandboxId": sid, "message": message, "code": 502, "state": "paused"}, status_code=502)


def _infer(running: list[SandboxHandle], request: HTTPConnection, policy: Policy) -> SandboxHandle:
    # Only one whose token find_sandbox then checks: a sandbox without one (`secure: false`) admits
    # everyone who names it, its id being the only secret (E2B's model), so it is never guessed.
    if len(running) == 1 and running[0].access_token is not None:
        return running[0]
    if not running:
        # Whatever sandbox the client means is not running: say so the way the SDK understands.
        raise SandboxNotRunning("no sandbox is running", sandbox_id="")
    proven = [s for s in running if s.access_token is not None and _proves(policy, s.access_token, request)]
    if len(proven) == 1:
        return proven[0]  # find_sandbox applies the policy again: an expired signature answers as such
    if not proven:  # no sandbox's token made these credentials (or there are none)
        raise AuthenticationError(UNAUTHORIZED)
    raise InvalidArgument(f"{len(running)} sandboxes are running: send the E2b-Sandbox-Id header")


def _proves(policy: Policy, token: str, request: HTTPConnection) -> bool:
    """Whether the request's token or signature was made with ``token`` (even if it has expired)."""
    try:
        policy(token, request)
    except AuthenticationError as e:
        return e.message == SIGNATURE_EXPIRED  # only checked once the signature matched
    return True

