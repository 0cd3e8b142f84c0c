"""`sandlot volume create|list|delete`: persistent named volumes, thin over the blocking SDK
(docs/volumes.md); `sandlot create -v NAME:/path` mounts one. A volume is the API key's team's."""

from __future__ import annotations

import typer

from ._common import ApiKey, ApiUrl, JsonOpt, QuietOpt, console, error, friendly, not_found, note, print_json

app = typer.Typer(no_args_is_help=True, help="Persistent named volumes: files that outlive sandboxes.")

VolumeOpt = typer.Option(None, "--volume", "-v",
                         help="Mount a volume: NAME:/path (its name or id; repeatable; see `sandlot volume create`).")


def mounts(items: list[str] | None) -> dict[str, str] | None:
    """["NAME:/path", ...] -> {"/path": NAME}, as `volume_mounts` takes them (docker's `-v` order);
    a malformed item, or two volumes at one path, is a usage error (exit 2)."""
    found: dict[str, str] = {}
    for item in items or ():
        name, sep, path = item.partition(":")
        if not sep or not name or not path.startswith("/"):
            raise typer.BadParameter(f"expected NAME:/absolute/path, got {item!r}", param_hint="--volume")
        if path in found:
            raise typer.BadParameter(f"two volumes at {path}", param_hint="--volume")
        found[path] = name
    return found or None


def create(name: str = typer.Argument(..., help="Its name, unique within the team."),
           size_mb: int = typer.Option(None, "--size-mb", help="Its size in MiB, a hard quota (default 1024)."),
           as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Make a volume; prints its id. Its size counts toward the team's disk quota."""
    from .. import Volume

    vol = Volume.create(name, size_mb=size_mb, api_url=api_url, api_key=api_key)
    if as_json:
        print_json({"volume_id": vol.volume_id, "name": vol.name})
    else:
        print(vol.volume_id)


def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List the team's volumes, oldest first."""
    from .. import Volume

    vols = Volume.list(api_url=api_url, api_key=api_key)
    if as_json:
        print_json(vols)
        return
    if quiet:
        for vol in vols:
            print(vol.volume_id)
        return
    if not vols:
        note("no volumes")
        return
    from rich.table import Column, Table

    table = Table(Column("volume", no_wrap=True), Column("name", overflow="fold"), box=None)
    for vol in vols:
        table.add_row(vol.volume_id, vol.name)
    console(markup=False).print(table)


def delete(volume: str = typer.Argument(..., help="Volume id or name."),
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Delete a volume and its files (refused while a sandbox mounts it)."""
    from .. import Volume

    if not Volume.destroy(volume, api_url=api_url, api_key=api_key):
        error(not_found("volume", volume))
        raise typer.Exit(1)
    print(f"deleted {volume}")


app.command()(friendly(create))
app.command("list")(friendly(list_))
app.command()(friendly(delete))
