"""`sandlot template build|list`: the root filesystems sandboxes start from, built on this machine.

Templates live in the server's state directory (like `sandlot keys`, these commands work on it
directly, not over the API); a running server picks up a rebuilt template for new sandboxes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import HomeOpt, JsonOpt, QuietOpt, console, friendly, print_json

app = typer.Typer(no_args_is_help=True, help="Build and list templates.")


def _store(home: Path | None):
    from ..server.config import Config
    from ..templates import TemplateStore

    return TemplateStore(home or Config().home)


@app.command()
@friendly
def build(name: str = typer.Argument(..., help="Template name (see `sandlot template list`)."),
          if_stale: bool = typer.Option(False, "--if-stale",
                                        help="Only build it if it is missing or its recipe changed."),
          home: Path = HomeOpt) -> None:
    """(Re)build a template; running sandboxes keep the version they started from."""
    from ..templates import progress_bar

    store = _store(home)
    out = console()
    if if_stale and store.is_built(name):
        out.print(f"{name} is up to date: {store.describe(name).rootfs}", markup=False)
        return
    with progress_bar(f"template {name}", console=console(stderr=True)) as progress:
        template = store.build(name, progress=progress, force=not if_stale)
    manifest = store.manifest(name) or {}
    took = f" in {manifest['build_seconds']}s" if "build_seconds" in manifest else ""
    out.print(f"[green]built[/] {name}{took}: {template.rootfs}")


def _status(store, name: str, manifest: dict | None) -> str:
    if manifest is None:
        return "not built"
    return "built" if store.is_built(name) else "outdated"  # outdated: its recipe changed; next use rebuilds


@app.command("list")
def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, home: Path = HomeOpt) -> None:
    """List known templates and whether they are built."""
    store = _store(home)
    rows = []
    for name in store.list():
        manifest = store.manifest(name)
        rows.append({"name": name, "status": _status(store, name, manifest),
                     "built_at": (manifest or {}).get("built_at"),
                     "build_seconds": (manifest or {}).get("build_seconds")})
    if as_json:
        print_json(rows)
        return
    if quiet:
        for row in rows:
            print(row["name"])
        return
    from rich.table import Table

    colour = {"built": "green", "outdated": "yellow", "not built": "dim"}
    table = Table("name", "status", "built at", "build time", box=None)
    for row in rows:
        seconds = row["build_seconds"]
        table.add_row(row["name"], f"[{colour[row['status']]}]{row['status']}[/]", row["built_at"] or "",
                      f"{seconds}s" if seconds else "")
    console().print(table)
