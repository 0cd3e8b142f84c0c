"""`sandlot template build|list` (in progress)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Build and list templates.")


@app.command("list")
def list_() -> None:
    """List templates."""
