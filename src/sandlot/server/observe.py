"""Every request, seen once: one access-log line (logger `sandlot.access`), its metrics, and its
audit row if it is one to record (audit.py decides).

The line holds the method, the route template (`/sandboxes/{sandbox_id}`, never the raw path, so
ids and junk paths do not become labels), the status, the latency, the API key id and the sandbox.
Inner layers add what only they know to the request's RequestInfo (request_info.py).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import AuditLog
from .metrics import Metrics
from .request_info import CLIENT_LEFT, RequestInfo, route_template, serving

log = logging.getLogger("sandlot.access")


class Observe:
    """Pure ASGI middleware around the whole app."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None, audit: AuditLog | None = None):
        self.app, self.metrics, self.audit = app, metrics, audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        with serving(scope) as info:
            await self._observed(scope, receive, send, info)

    async def _observed(self, scope: Scope, receive: Receive, send: Send, info: RequestInfo) -> None:
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")[:64]
    return None
