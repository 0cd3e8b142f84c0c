"""Lifecycle events of sandboxes: one log line each (logger `sandlot.events`) and their metrics.

The service calls these as things happen; nothing here decides anything.
"""

from __future__ import annotations

import logging

from .._exceptions import SandlotError
from .metrics import Metrics

log = logging.getLogger("sandlot.events")


class Events:
    def __init__(self, metrics: Metrics | None = None):
        self.metrics = metrics

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

    def killed(self, sandbox_id: str, template: str, reason: str, seconds: float) -> None:
        _event("killed", sandbox=sandbox_id, template=template, reason=reason, seconds=round(seconds, 4))
        if self.metrics:
            self.metrics.kills.labels(reason).inc()
            self.metrics.kill_seconds.observe(seconds)

    def paused(self, sandbox_id: str) -> None:
        _event("paused", sandbox=sandbox_id)

    def resumed(self, sandbox_id: str) -> None:
        _event("resumed", sandbox=sandbox_id)


def _event(what: str, level: int = logging.INFO, **fields) -> None:
    log.log(level, "sandbox %s", what, extra={"fields": {"event": what.replace(" ", "_"), **fields},
                                               "in_message": ("event",)})
