"""`sandlot audit`: the server's audit trail (GET /audit), newest first.

A key reads its own team's rows; an admin key (the preset SANDLOT_API_KEY, the first key) reads
every team's. Paths in it were named by sandboxes: control characters are shown as `?`.
"""

from __future__ import annotations

import json
import time

import typer

from ._common import ApiKey, ApiUrl, clean, friendly, print_json


def _fetch(api_url: str, api_key: str | None, params: dict) -> dict:
    import httpx

    from .. import _exceptions as E
    from ..client._config import _ca_file
    from ..client._http import _tls

    try:  # a server with TLS is verified as the SDK does ($SANDLOT_CA_FILE besides the system's CAs)
        r = httpx.get(api_url.rstrip("/") + "/audit", params=params, timeout=60, verify=_tls(_ca_file(None)),
                      headers={"X-API-KEY": api_key} if api_key else {})
    except httpx.HTTPError as e:
        raise E.SandlotError(f"cannot reach the sandlot server: {e or type(e).__name__}") from None
    if r.status_code != 200:
        try:
            message = r.json()["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text.strip()[:500] or f"HTTP {r.status_code}"
        kind = {400: E.InvalidArgument, 401: E.AuthenticationError, 403: E.PermissionDenied, 404: E.NotFound}
        raise kind.get(r.status_code, E.SandlotError)(message)
    return r.json()


def _line(e: dict) -> str:
    detail = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in (e["detail"] or {}).items())
    foreign = f" (team {e['foreignTeam']}'s)" if e.get("foreignTeam") else ""
    return clean(f"{e['time']}  {e['team'] or '-'}  {e['key'] or '-'}  {e['sandbox'] or '-'}{foreign}  "
                 f"{e['action']}  {e['outcome']} {e['status'] if e['status'] is not None else ''}  {detail}".rstrip())


@friendly
def audit(team: str = typer.Option(None, help="Only this team's rows (name or id; admin keys)."),
          key: str = typer.Option(None, help="Only this API key id's rows."),
          sandbox: str = typer.Option(None, help="Only this sandbox's rows."),
          action: str = typer.Option(None, help="An action, or a prefix ending in '.' (sandbox., file.)."),
          outcome: str = typer.Option(None, help="ok, denied, not_found, refused, failed or abandoned."),
          since: float = typer.Option(None, help="Only rows of the last SINCE seconds."),
          limit: int = typer.Option(100, min=1, help="At most this many rows (newest first)."),
          as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON array."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Show the audit trail: who created, connected, killed, ran and wrote what, and what was refused."""
    params = {k: v for k, v in {"team": team, "key": key, "sandbox": sandbox, "action": action,
                                "outcome": outcome, "since": time.time() - since if since else None}.items()
              if v is not None}
    entries: list[dict] = []
    cursor = None
    while len(entries) < limit:
        page = _fetch(api_url, api_key, {**params, "limit": min(1000, limit - len(entries)),
                                         **({"cursor": cursor} if cursor else {})})
        entries += page["entries"]
        cursor = page["next"]
        if not cursor:
            break
    if as_json:
        print_json(entries)
        return
    for e in entries:
        print(_line(e))


def register(app: typer.Typer) -> None:
    app.command()(audit)
