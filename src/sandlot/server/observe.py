"""Every request, seen once: one access-log line (logger `sandlot.access`), its metrics, and its
audit row if it is one to record (audit.py decides).

The line holds the method, the route template (`/sandboxes/{sandbox_id}`, never the raw path, so
ids and junk paths do not become labels), the status, the latency, the API key id and the sandbox.
Inner layers add what only they know to the request's RequestInfo (auth.py the caller, the envd
gate the sandbox and its team, a create its new sandbox, handlers details with `note()`).
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics

if TYPE_CHECKING:
    from .audit import AuditLog

log = logging.getLogger("sandlot.access")

UNMATCHED = "<unmatched>"  # the label of requests no route took (404s of any path)
CLIENT_LEFT = 499  # no answer was sent: the client went away first
_INFO = "sandlot.request"


@dataclass
class RequestInfo:
    key_id: str | None = None
    sandbox_id: str | None = None
    team: str | None = None  # the caller's (API key), or the sandbox's (sandbox traffic)
    admin: bool = False
    foreign_team: str | None = None  # the owner of what the path named, when refused as another team's
    detail: dict[str, Any] = field(default_factory=dict)  # non-secret details for the audit trail


_current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar("sandlot_request", default=None)


def current_request() -> RequestInfo | None:
    """The info of the request being served (None outside a request: the reaper, startup)."""
    return _current.get()


def note(**detail: Any) -> None:
    """Add details to the audit row of the request being served (Connect handlers see no scope)."""
    if (info := _current.get()) is not None:
        info.detail.update(detail)


def request_info(scope: Scope) -> RequestInfo:
    """The request's info (a fresh one outside Observe, e.g. in tests of one route)."""
    info = scope.get(_INFO)
    if info is None:
        info = scope[_INFO] = RequestInfo()
    return info


class Observe:
    """Pure ASGI middleware around the whole app."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None, audit: AuditLog | None = None):
        self.app, self.metrics, self.audit = app, metrics, audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        info = request_info(scope)
        token = _current.set(info)
        arrived = time.time()
        started = time.perf_counter()
        answer: dict[str, float | int] = {}

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body" and "first_byte" not in answer:
                answer["first_byte"] = time.perf_counter() - started
            await send(message)

        status = 500
        try:
            await self.app(scope, receive, observed)
            status = int(answer.get("status", CLIENT_LEFT))
        except BaseException:
            status = int(answer.get("status", 500))
            raise
        finally:
            _current.reset(token)
            seconds = time.perf_counter() - started
            route = route_template(scope, status)
            if log.isEnabledFor(logging.INFO):
                sandbox = info.sandbox_id or scope.get("path_params", {}).get("sandbox_id") or \
                    _header(scope, b"e2b-sandbox-id")
                log.info("%s %s %s %.1fms", scope["method"], route, status, seconds * 1000, extra={"fields": {
                    "method": scope["method"], "route": route, "status": status, "ms": round(seconds * 1000, 2),
                    "key": info.key_id, "sandbox": sandbox}, "in_message": ("method", "route", "status", "ms")})
            if self.metrics is not None:
                self.metrics.request(scope["method"], route, status, seconds, answer.get("first_byte"), info.key_id,
                                     info.team)
            if self.audit is not None:
                self.audit.request(scope, info, status, arrived)


def route_template(scope: Scope, status: int) -> str:
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    if isinstance(route, Mount):
        # a Connect service: its method names are a short fixed list, but a refused request may
        # name any path under it
        return scope["path"] if status < 400 else route.path + "/*"
    return route.path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")[:64]
    return None
