"""`sandlot keys create|list|revoke`: API keys, stored hashed in the server's state database.

Like `sandlot teams`, these work on the state directory directly (not over the API): whoever may
run them on the server's machine is its administrator. Each change is written to the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from ._common import HomeOpt, JsonOpt, QuietOpt, console, error, friendly, not_found, print_json

app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
PIPED_WIDTH = 132  # rich would take 80 columns and wrap names
LOCAL_CLI = "local-cli"  # the key id of changes made with these commands, in the audit trail


def _store(home: Path | None):
    from ..server.config import Config
    from ..server.store import Store

    return Store((home or Config().home) / "state.db")


def audited(store, action: str, **fields) -> None:
    """One row of the audit trail for a change made here."""
    from ..server import audit

    audit.append(store.db, action, key_id=LOCAL_CLI, **fields)


@app.command()
@friendly
def create(name: str = typer.Argument("default"),
           team: str = typer.Option("default", "--team", help="The team the key belongs to (see `sandlot teams`)."),
           admin: bool = typer.Option(False, "--admin", help="An admin key: also reads every team's audit trail "
                                                             "and /metrics."),
           as_json: bool = JsonOpt, home: Path = HomeOpt) -> None:
    """Create a key; it is printed once (ID KEY, or --json: {"id", "name", "team", "admin", "key"})."""
    store = _store(home)
    rec, key = store.create_key(name, team=team, admin=admin)
    audited(store, "key.create", team=rec.team, detail={"key": rec.id, "name": name, "admin": admin})
    if as_json:
        print_json({"id": rec.id, "name": rec.name, "team": rec.team, "admin": rec.admin, "key": key})
    else:
        print(f"{rec.id}  {key}")


def _time(t: float | None) -> str | None:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds") if t else None


@app.command("list")
def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, home: Path = HomeOpt) -> None:
    """List keys (never the keys themselves)."""
    store = _store(home)
    keys = store.list_keys()
    names = {t.id: t.name for t in store.teams.list()}
    if as_json:
        print_json([{"id": k.id, "name": k.name, "team": names.get(k.team, k.team), "admin": k.admin,
                     "prefix": k.prefix, "created_at": _time(k.created_at), "revoked_at": _time(k.revoked_at)}
                    for k in keys])
        return
    if quiet:
        for k in keys:
            print(k.id)
        return
    from rich.table import Table

    # no borders, and ids never cut short: the id is what `revoke` takes
    table = Table(box=None)
    table.add_column("id", no_wrap=True, min_width=16)
    for column in ("name", "team", "admin", "prefix", "created", "revoked"):
        table.add_column(column, no_wrap=column != "name")
    short = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else ""  # noqa: E731
    for k in keys:
        table.add_row(k.id, k.name, names.get(k.team, k.team), "yes" if k.admin else "", k.prefix + "…",
                      short(k.created_at), short(k.revoked_at))
    out = console(markup=False)
    if not out.is_terminal:
        out.width = PIPED_WIDTH
    out.print(table)


@app.command()
def revoke(key_id: str, home: Path = HomeOpt) -> None:
    """Revoke a key by id."""
    store = _store(home)
    team = next((k.team for k in store.list_keys() if k.id == key_id), None)
    if not store.revoke_key(key_id):
        error(not_found("active key", key_id))
        raise typer.Exit(1)
    audited(store, "key.revoke", team=team, detail={"key": key_id})
    print(f"revoked {key_id}")
