"""`sandlot keys create|list|revoke`: API keys, stored hashed in the server's state database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..server.config import Config
from ..server.store import Store

app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
console = Console()
HomeOpt = typer.Option(None, help="State directory (default /var/lib/sandlot, or $SANDLOT_HOME).")


def _store(home: Path | None) -> Store:
    config = Config()
    return Store((home or config.home) / "state.db")


@app.command()
def create(name: str = typer.Argument("default"), home: Path = HomeOpt) -> None:
    """Create a key; it is printed once."""
    rec, key = _store(home).create_key(name)
    console.print(f"{rec.id}  {key}")


@app.command("list")
def list_(home: Path = HomeOpt) -> None:
    """List keys (never the keys themselves)."""
    # no borders, and ids never cut short: piped output is 80 columns wide, and the id is what
    # `revoke` takes
    table = Table(box=None)
    table.add_column("id", no_wrap=True, min_width=16)
    for name in ("name", "prefix", "created", "revoked"):
        table.add_column(name, no_wrap=name != "name")
    for k in _store(home).list_keys():
        fmt = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else ""  # noqa: E731
        table.add_row(k.id, k.name, k.prefix + "…", fmt(k.created_at), fmt(k.revoked_at))
    console.print(table)


@app.command()
def revoke(key_id: str, home: Path = HomeOpt) -> None:
    """Revoke a key by id."""
    if not _store(home).revoke_key(key_id):
        console.print(f"[red]no active key {key_id}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")
