"""`sandlot keys create|list|revoke`: API keys, stored hashed in the server's state database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from ._common import HomeOpt, JsonOpt, QuietOpt, console, error, not_found, print_json

app = typer.Typer(no_args_is_help=True, help="Manage API keys.")


def _store(home: Path | None):
    from ..server.config import Config
    from ..server.store import Store

    return Store((home or Config().home) / "state.db")


@app.command()
def create(name: str = typer.Argument("default"), as_json: bool = JsonOpt, home: Path = HomeOpt) -> None:
    """Create a key; it is printed once (ID KEY, or --json: {"id", "name", "key"})."""
    rec, key = _store(home).create_key(name)
    if as_json:
        print_json({"id": rec.id, "name": rec.name, "key": key})
    else:
        print(f"{rec.id}  {key}")


def _time(t: float | None) -> str | None:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds") if t else None


@app.command("list")
def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, home: Path = HomeOpt) -> None:
    """List keys (never the keys themselves)."""
    keys = _store(home).list_keys()
    if as_json:
        print_json([{"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": _time(k.created_at),
                     "revoked_at": _time(k.revoked_at)} for k in keys])
        return
    if quiet:
        for k in keys:
            print(k.id)
        return
    from rich.table import Table

    # no borders, and ids never cut short: piped output is 80 columns wide, and the id is what
    # `revoke` takes
    table = Table(box=None)
    table.add_column("id", no_wrap=True, min_width=16)
    for column in ("name", "prefix", "created", "revoked"):
        table.add_column(column, no_wrap=column != "name")
    short = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else ""  # noqa: E731
    for k in keys:
        table.add_row(k.id, k.name, k.prefix + "…", short(k.created_at), short(k.revoked_at))
    console(markup=False).print(table)


@app.command()
def revoke(key_id: str, home: Path = HomeOpt) -> None:
    """Revoke a key by id."""
    if not _store(home).revoke_key(key_id):
        error(not_found("active key", key_id))
        raise typer.Exit(1)
    print(f"revoked {key_id}")
