"""`sandlot template build|list`: the root filesystems sandboxes start from, built on this machine.

Templates live in the server's state directory (like `sandlot keys`, these commands work on it
directly, not over the API); a running server picks up a rebuilt template for new sandboxes.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .._exceptions import SandlotError
from ..server.config import Config
from ..templates import TemplateStore, progress_bar

app = typer.Typer(no_args_is_help=True, help="Build and list templates.")
console = Console()
errors = Console(stderr=True)
HomeOpt = typer.Option(None, help="State directory (default /var/lib/sandlot, or $SANDLOT_HOME).")


def _store(home: Path | None) -> TemplateStore:
    return TemplateStore(home or Config().home)


@app.command()
def build(name: str = typer.Argument(..., help="Template name (see `sandlot template list`)."),
          if_stale: bool = typer.Option(False, "--if-stale",
                                        help="Only build it if it is missing or its recipe changed."),
          home: Path = HomeOpt) -> None:
    """(Re)build a template; running sandboxes keep the version they started from."""
    store = _store(home)
    if if_stale and store.is_built(name):
        console.print(f"{name} is up to date: {store.describe(name).rootfs}")
        return
    try:
        with progress_bar(f"template {name}", console=errors) as progress:
            template = store.build(name, progress=progress, force=not if_stale)
    except SandlotError as e:
        errors.print(f"[red]error:[/] {e.message}")
        raise typer.Exit(1) from None
    manifest = store.manifest(name) or {}
    took = f" in {manifest['build_seconds']}s" if "build_seconds" in manifest else ""
    console.print(f"[green]built[/] {name}{took}: {template.rootfs}")


@app.command("list")
def list_(home: Path = HomeOpt) -> None:
    """List known templates and whether they are built."""
    store = _store(home)
    table = Table("name", "status", "built at", "build time", box=None)
    for name in store.list():
        manifest = store.manifest(name)
        if manifest is None:
            status = "[dim]not built[/]"
        elif store.is_built(name):
            status = "[green]built[/]"
        else:
            status = "[yellow]outdated[/]"  # its recipe changed since: the next use rebuilds it
        seconds = (manifest or {}).get("build_seconds")
        table.add_row(name, status, (manifest or {}).get("built_at", ""), f"{seconds}s" if seconds else "")
    console.print(table)
