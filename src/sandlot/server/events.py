"""Lifecycle events of sandboxes: one log line each (logger `sandlot.events`), their metrics, and
an audit row for what no request did (a timeout, an auto-pause, a sandbox that exited, the
server's shutdown: a request's own changes are recorded by observe.py).

The service calls these as things happen; nothing here decides anything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._exceptions import SandlotError
from .audit import SYSTEM
from .metrics import Metrics
from .request_info import current_request

if TYPE_CHECKING:
    from .audit import AuditLog

log = logging.getLogger("sandlot.events")


class Events:
    def __init__(self, metrics: Metrics | None = None, audit: AuditLog | None = None):
        self.metrics, self.audit = metrics, audit

    def _by_the_server(self, action: str, sandbox_id: str, team: str | None, **detail) -> None:
        if self.audit is not None and current_request() is None:
            self.audit.record(action, team=team, key_id=SYSTEM, sandbox=sandbox_id, detail=detail)

    def created(self, sandbox_id: str, template: str, pooled: bool, seconds: float) -> None:
        _event("created", sandbox=sandbox_id, template=template, pooled=pooled, seconds=round(seconds, 4))
        if self.metrics:
            self.metrics.creates.labels(template, "ok").inc()
            self.metrics.create_seconds.labels(template, str(pooled).lower()).observe(seconds)

    def create_failed(self, template: str, error: BaseException, seconds: float) -> None:
        refused = isinstance(error, SandlotError) and error.status < 500  # the request's fault
        _event("create failed", template=template, error=type(error).__name__, seconds=round(seconds, 4),
               level=logging.INFO if refused else logging.WARNING)
        if self.metrics:
            self.metrics.creates.labels(template, "error").inc()

    def killed(self, sandbox_id: str, template: str, reason: str, seconds: float, team: str | None = None) -> None:
        _event("killed", sandbox=sandbox_id, template=template, reason=reason, seconds=round(seconds, 4))
        self._by_the_server("sandbox.kill", sandbox_id, team, reason=reason)
        if self.metrics:
            self.metrics.kills.labels(reason).inc()
            self.metrics.kill_seconds.observe(seconds)

    def paused(self, sandbox_id: str, team: str | None = None) -> None:
        _event("paused", sandbox=sandbox_id)
        self._by_the_server("sandbox.pause", sandbox_id, team, reason="timeout")

    def resumed(self, sandbox_id: str, team: str | None = None) -> None:
        _event("resumed", sandbox=sandbox_id)


def _event(what: str, level: int = logging.INFO, **fields) -> None:
    log.log(level, "sandbox %s", what, extra={"fields": {"event": what.replace(" ", "_"), **fields},
                                               "in_message": ("event",)})
