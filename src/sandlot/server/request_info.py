"""What one request carries through the server's layers: who called, which sandbox, details for its
audit row. Observe (observe.py) makes it; auth.py adds the caller, the envd gate the sandbox and its
team, a create its new sandbox, handlers details with `note()`; audit.py and the access log read it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import Mount
from starlette.types import Scope

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


@contextmanager
def serving(scope: Scope) -> Iterator[RequestInfo]:
    """The request's info, current (for note() and current_request()) until the block ends."""
    info = request_info(scope)
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)


def route_template(scope: Scope, status: int) -> str:
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    if isinstance(route, Mount):
        # a Connect service: its method names are a short fixed list, but a refused request may
        # name any path under it
        return scope["path"] if status < 400 else route.path + "/*"
    return route.path
