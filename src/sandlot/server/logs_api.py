"""A sandbox's logs over REST, in E2B's two shapes (entries from journal.py):

    GET /sandboxes/{id}/logs?start=MS&limit=N
        {"logs": [{"timestamp", "line"}], "logEntries": [{"timestamp", "level", "message", "fields"}]}
        oldest first, from `start` (unix ms, inclusive) on; `line` is the entry as a JSON object
        (level, logger, message and the fields), which `e2b sandbox logs` prints.
    GET /v2/sandboxes/{id}/logs?cursor=MS&limit=N&direction=forward|backward&level=L&search=TEXT
        {"logs": [{"timestamp", "level", "message", "fields"}]}: forward (the default) is oldest
        first from `cursor` on, backward newest first from `cursor` (default now) back; `level` is
        the least severe level shown (debug < info < warn < error), `search` a substring of the
        message.

`limit` is 1000 by default and at most 1000. A sandbox is found while it runs or is paused, and
for a while after it ended (journal.py); otherwise 404.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from .journal import LEVELS, Entry

MAX_LIMIT = 1000


def _int(request: Request, name: str, default: int | None, maximum: int | None = None) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise E.InvalidArgument(f"{name} must be an integer, got {value!r}") from None
    if number < 0 or (maximum is not None and number > maximum):
        raise E.InvalidArgument(f"{name} must be between 0 and {maximum}" if maximum else f"{name} must be >= 0")
    return number


def _entries(request: Request) -> list[Entry]:
    sandbox_id = request.path_params["sandbox_id"]
    entries = request.app.state.service.journal.entries(sandbox_id)
    if entries is None:
        raise E.NotFound(f"sandbox \"{sandbox_id}\" not found")
    return entries


def _time(entry: Entry) -> str:
    # to the millisecond, the cursors' unit: the next page starts at the last entry's time + 1 ms
    when = datetime.fromtimestamp(entry.timestamp, timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(entry: Entry) -> int:
    return int(entry.timestamp * 1000)


def _entry_json(entry: Entry) -> dict:
    return {"timestamp": _time(entry), "level": entry.level, "message": entry.message,
            "fields": {"logger": entry.logger, **entry.fields}}


def _line(entry: Entry) -> str:
    return json.dumps({"level": entry.level, "logger": entry.logger, "message": entry.message, **entry.fields})


async def logs_v1(request: Request) -> Response:
    start = _int(request, "start", 0)
    limit = _int(request, "limit", MAX_LIMIT, MAX_LIMIT)
    page = [e for e in _entries(request) if _ms(e) >= start][:limit]
    return JSONResponse({"logs": [{"timestamp": _time(e), "line": _line(e)} for e in page],
                         "logEntries": [_entry_json(e) for e in page]})


async def logs_v2(request: Request) -> Response:
    cursor = _int(request, "cursor", None)
    limit = _int(request, "limit", MAX_LIMIT, MAX_LIMIT)
    direction = request.query_params.get("direction") or "forward"
    if direction not in ("forward", "backward"):
        raise E.InvalidArgument(f"direction must be forward or backward, got {direction!r}")
    level = request.query_params.get("level") or "debug"
    if level not in LEVELS:
        raise E.InvalidArgument(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    search = request.query_params.get("search") or ""
    least = LEVELS.index(level)
    found = [e for e in _entries(request) if LEVELS.index(e.level) >= least and search in e.message]
    if direction == "forward":
        page = [e for e in found if cursor is None or _ms(e) >= cursor]
    else:
        page = [e for e in reversed(found) if cursor is None or _ms(e) <= cursor]
    return JSONResponse({"logs": [_entry_json(e) for e in page[:limit]]})


def routes() -> list[Route]:
    return [
        Route("/sandboxes/{sandbox_id}/logs", logs_v1, methods=["GET"]),
        Route("/v2/sandboxes/{sandbox_id}/logs", logs_v2, methods=["GET"]),
    ]
