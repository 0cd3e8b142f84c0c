"""The server's log: one stream on stderr, as text lines or JSON objects (SANDLOT_LOG_FORMAT).

Records that carry structured fields (`extra={"fields": {...}}`: the access log, lifecycle events)
show them as keys of the object in JSON, and in text as `key=value` after the message, except
those the message already says (`extra={"in_message": (...)}`). Warnings a
hostile client can cause at will (malformed requests, dropped connections) are rate-limited: at
most one line per RATE_WINDOW seconds each, with a count of those left out.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any

RATE_WINDOW = 10.0
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# what a client can make uvicorn log at will, once per request or connection
_NOISY = {"Invalid HTTP request received.", "Exceeded concurrency limit."}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second, self._stamp = -1, ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # logging's own, with the date and time made once per second (an access-log line each command)
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return self.default_msec_format % (self._stamp, record.msecs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        said = getattr(record, "in_message", ())
        fields = {k: v for k, v in (getattr(record, "fields", None) or {}).items() if v is not None and k not in said}
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, and the
    traceback as one string (a JSON line never spans lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        entry.update({k: v for k, v in (getattr(record, "fields", None) or {}).items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RateLimit(logging.Filter):
    """Lets through one record per distinct message each `window` seconds; the next one let
    through says how many were left out."""

    def __init__(self, messages: set[str] | None = None, window: float = RATE_WINDOW):
        super().__init__()
        self.messages, self.window = messages, window
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        if self.messages is not None and key not in self.messages:
            return True
        now = time.monotonic()
        if now - self._last.get(key, -self.window) < self.window:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        if dropped := self._dropped.pop(key, 0):
            record.msg = f"{record.msg} ({dropped} more like it in the last {self.window:g} s not logged)"
        return True


def setup(level: str = "info", fmt: str = "text") -> None:
    """Send every logger (sandlot's and uvicorn's) to stderr in `fmt` ("text" or "json")."""
    # What no line here shows is not gathered for each record (the logging HOWTO's "Optimization":
    # the caller's frame, thread and process): ~17% of an access-log line's cost, on every request.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()  # propagate to ours
    logging.getLogger("uvicorn.error").addFilter(RateLimit(_NOISY))


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text
