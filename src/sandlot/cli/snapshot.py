"""`sandlot snapshot create|list|delete|fork|export|import`: snapshots of sandboxes, thin over the
blocking SDK (docs/snapshots.md). A snapshot is the API key's team's."""

from __future__ import annotations

import typer

from ._common import ApiKey, ApiUrl, JsonOpt, QuietOpt, console, error, friendly, not_found, note, print_json

app = typer.Typer(no_args_is_help=True, help="Snapshots of sandboxes: keep their files, start sandboxes from them.")


def create(sandbox_id: str = typer.Argument(..., help="The sandbox to snapshot."),
           name: str = typer.Option(None, "--name", "-n", help="A name to create sandboxes from."),
           warm: bool = typer.Option(False, "--warm", help="Keep a pool of sandboxes ready on it."),
           as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Snapshot a sandbox's files, env vars and metadata (not its processes); prints its id."""
    from .. import Sandbox

    snap = Sandbox.create_snapshot(sandbox_id, name=name, warm=warm, api_url=api_url, api_key=api_key)
    if as_json:
        print_json(snap)
    else:
        print(snap.snapshot_id)


def list_(sandbox_id: str = typer.Option(None, "--sandbox", help="Only this sandbox's snapshots."),
          name: str = typer.Option(None, "--name", "-n", help="Only this name."),
          as_json: bool = JsonOpt, quiet: bool = QuietOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List snapshots, newest first."""
    from .. import Sandbox

    snaps = Sandbox.list_snapshots(sandbox_id=sandbox_id, name=name, api_url=api_url, api_key=api_key)
    if as_json:
        print_json(snaps)
        return
    if quiet:
        for snap in snaps:
            print(snap.snapshot_id)
        return
    if not snaps:
        note("no snapshots")
        return
    from rich.table import Column, Table

    table = Table(Column("snapshot", no_wrap=True), Column("names", overflow="fold"), box=None)
    for snap in snaps:
        table.add_row(snap.snapshot_id, ", ".join(snap.names))
    console(markup=False).print(table)


def delete(snapshot_id: str = typer.Argument(..., help="Snapshot id or name."),
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Delete a snapshot (sandboxes made from it keep running)."""
    from .. import Sandbox

    if not Sandbox.delete_snapshot(snapshot_id, api_url=api_url, api_key=api_key):
        error(not_found("snapshot", snapshot_id))
        raise typer.Exit(1)
    print(f"deleted {snapshot_id}")


def fork(sandbox_id: str = typer.Argument(..., help="The sandbox to fork."),
         count: int = typer.Option(1, "--count", "-c", help="How many children (1-20)."),
         timeout: int = typer.Option(300, help="Seconds each child lives."),
         as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """New sandboxes with the sandbox's files at this instant (not its processes); prints their ids
    (a child that did not start: its error, and exit code 1)."""
    from .. import Sandbox

    kids = Sandbox.fork(sandbox_id, count=count, timeout=timeout, api_url=api_url, api_key=api_key)
    if as_json:
        print_json([{"sandboxID": k.sandbox_id} if isinstance(k, Sandbox) else {"error": k.message} for k in kids])
    for kid in kids:
        if isinstance(kid, Sandbox):
            if not as_json:
                print(kid.sandbox_id)
            kid.close()
        else:
            error(kid.message or type(kid).__name__)
    if not all(isinstance(k, Sandbox) for k in kids):
        raise typer.Exit(1)


def export_(snapshot_id: str = typer.Argument(..., help="Snapshot id or name."),
            as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Copy a snapshot to the server's storage (SANDLOT_STORAGE: a directory or s3://bucket/prefix)."""
    from .. import Sandbox

    done = Sandbox.export_snapshot(snapshot_id, api_url=api_url, api_key=api_key)
    if as_json:
        print_json(done)
    else:
        print(f"{done.snapshot_id} -> {done.location} as {done.export_id} ({done.uploaded} of {done.layers} layers "
              f"uploaded; import it with: sandlot snapshot import {done.export_id})")


def import_(snapshot_id: str = typer.Argument(..., help="The export's id (snap..., as export printed it)."),
            name: str = typer.Option(None, "--name", "-n", help="Name it here (default: its own name)."),
            as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Bring a snapshot another sandlot host exported into this server (from its storage)."""
    from .. import Sandbox

    snap = Sandbox.import_snapshot(snapshot_id, name=name, api_url=api_url, api_key=api_key)
    if as_json:
        print_json(snap)
    else:
        print(snap.snapshot_id)


app.command()(friendly(create))
app.command("list")(friendly(list_))
app.command()(friendly(delete))
app.command()(friendly(fork))
app.command("export")(friendly(export_))
app.command("import")(friendly(import_))
