"""GET /audit: the audit trail (audit.py) over REST, newest first.

    GET /audit?team=&key=&sandbox=&action=&outcome=&since=&until=&limit=&cursor=
        {"entries": [{"id", "time", "team", "key", "sandbox", "action", "outcome", "status",
                      "detail", ("foreignTeam" for admins)}], "next": cursor or null}

A key sees its own team's rows; an admin key sees every team's (and the rows of requests that no
team made), or one team's with `team` (a name or id). `action` is exact, or a prefix when it ends
in '.' or '*' ("sandbox." or "file.*"); `since`/`until` are unix seconds or RFC 3339; `limit`
1-1000 (default 100); `cursor` is the `next` of the previous page.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from .audit import AuditLog
from .auth import caller

MAX_LIMIT = 1000


def _time(name: str, value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise E.InvalidArgument(f"{name} must be unix seconds or an RFC 3339 time, got {value!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _int(name: str, value: str | None, default: int | None, low: int, high: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise E.InvalidArgument(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise E.InvalidArgument(f"{name} must be between {low} and {high}" if high else f"{name} must be >= {low}")
    return number


async def audit(request: Request) -> Response:
    who = caller(request)
    q = request.query_params
    log: AuditLog = request.app.state.audit
    team = q.get("team") or None
    if team is not None:
        try:
            team = request.app.state.store.teams.get(team).id  # a name or an id
        except E.NotFound:
            if who.admin:
                raise
            team = None
        # refused alike whether or not such a team exists: a key learns no other team's name
        if not who.admin and team != who.team:
            raise E.PermissionDenied("only an admin key reads another team's audit trail")
    limit = _int("limit", q.get("limit"), 100, 1, MAX_LIMIT)
    entries = await asyncio.to_thread(
        log.query, team=team if who.admin else who.team, all_teams=who.admin and team is None,
        key=q.get("key") or None, sandbox=q.get("sandbox") or None, action=q.get("action") or None,
        outcome=q.get("outcome") or None, since=_time("since", q.get("since")), until=_time("until", q.get("until")),
        before=_int("cursor", q.get("cursor"), None, 1), limit=limit + 1)
    page = entries[:limit]
    return JSONResponse({"entries": [e.json(admin=who.admin) for e in page],
                         "next": str(page[-1].id) if len(entries) > limit else None})


def routes() -> list[Route]:
    return [Route("/audit", audit, methods=["GET"])]
