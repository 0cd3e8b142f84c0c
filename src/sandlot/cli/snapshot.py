"""`sandlot snapshot create|list|delete|fork|export|import`: snapshots over the API (thin over the
SDK; docs/snapshots.md)."""

from __future__ import annotations

import httpx
import typer
from rich.console import Console
from rich.table import Table

from ..client import Sandbox
from .sandboxes import ApiKey, ApiUrl, _friendly

app = typer.Typer(no_args_is_help=True, help="Snapshots of sandboxes: keep their files, start sandboxes from them.")
console = Console()


@app.command()
@_friendly
def create(sandbox_id: str = typer.Argument(..., help="The sandbox to snapshot."),
           name: str = typer.Option(None, "--name", "-n", help="A name to create sandboxes from."),
           warm: bool = typer.Option(False, "--warm", help="Keep a pool of sandboxes ready on it."),
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Snapshot a sandbox's files, env vars and metadata (not its processes)."""
    snap = Sandbox.create_snapshot(sandbox_id, name=name, warm=warm, api_url=api_url, api_key=api_key)
    console.print(snap.snapshot_id)


@app.command("list")
@_friendly
def list_(sandbox_id: str = typer.Option(None, "--sandbox", help="Only this sandbox's snapshots."),
          name: str = typer.Option(None, "--name", "-n", help="Only this name."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List snapshots, newest first."""
    table = Table("snapshot", "names", box=None)
    for snap in Sandbox.list_snapshots(sandbox_id=sandbox_id, name=name, api_url=api_url, api_key=api_key):
        table.add_row(snap.snapshot_id, ", ".join(snap.names))
    console.print(table)


@app.command()
@_friendly
def delete(snapshot_id: str = typer.Argument(..., help="Snapshot id or name."),
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Delete a snapshot (sandboxes made from it keep running)."""
    if not Sandbox.delete_snapshot(snapshot_id, api_url=api_url, api_key=api_key):
        console.print(f"no snapshot {snapshot_id}")
        raise typer.Exit(1)
    console.print(f"deleted {snapshot_id}")


@app.command()
@_friendly
def fork(sandbox_id: str = typer.Argument(..., help="The sandbox to fork."),
         count: int = typer.Option(1, "--count", "-c", help="How many children (1-20)."),
         timeout: int = typer.Option(300, help="Seconds each child lives."),
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """New sandboxes with the sandbox's files at this instant (not its processes)."""
    for kid in Sandbox.fork(sandbox_id, count=count, timeout=timeout, api_url=api_url, api_key=api_key):
        console.print(kid if isinstance(kid, Exception) else kid.sandbox_id)


def _post(api_url: str, api_key: str | None, path: str, body: dict | None = None) -> dict:
    try:
        r = httpx.post(api_url.rstrip("/") + path, json=body or {}, headers={"X-API-KEY": api_key or ""},
                       timeout=3600)
        data = r.json()
    except (httpx.HTTPError, ValueError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    if r.status_code >= 300:
        console.print(f"[red]error:[/] {data.get('message', r.text)}")
        raise typer.Exit(1)
    return data


@app.command("export")
def export_(snapshot_id: str = typer.Argument(..., help="Snapshot id or name."),
            api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Copy a snapshot to the server's storage (SANDLOT_STORAGE: a directory or s3://bucket/prefix)."""
    d = _post(api_url, api_key, f"/snapshots/{snapshot_id}/export")
    console.print(f"{d['snapshotID']} -> {d['location']} ({d['uploaded']} of {d['layers']} layers uploaded)")


@app.command("import")
def import_(snapshot_id: str = typer.Argument(..., help="The exported snapshot's id (snap...)."),
            name: str = typer.Option(None, "--name", "-n", help="Name it here (default: its own name)."),
            api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Bring a snapshot another sandlot host exported into this server."""
    d = _post(api_url, api_key, "/snapshots/import", {"snapshotID": snapshot_id, **({"name": name} if name else {})})
    console.print(d["snapshotID"])
