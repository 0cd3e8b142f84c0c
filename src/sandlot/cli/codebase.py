"""`sandlot codebase create|ls|show|upload|files|download|rm`: codebases, the file trees sandboxes
mount at /workspace with path permissions (docs/codebases.md), thin over the blocking SDK."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from .. import Codebase
from .sandboxes import ApiKey, ApiUrl, _friendly, console, errors

app = typer.Typer(no_args_is_help=True, help="Codebases: file trees that sandboxes mount at /workspace.")
ExcludeOpt = typer.Option(None, "--exclude", "-x", help="A name to leave out at any depth (repeatable).")


def _json(cb: Codebase) -> dict:
    return {"id": cb.id, "name": cb.name, "version": cb.version, "files": cb.files, "size": cb.size,
            "created_at": cb.created_at.isoformat()}


def create(name: str = typer.Argument(..., help="A name for it (free text)."),
           source: Path = typer.Option(None, "--from", help="A local directory to upload into it."),
           exclude: list[str] = ExcludeOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Create a codebase (from a local directory with --from) and print its id."""
    cb = Codebase.create(name, api_url=api_url, api_key=api_key)
    try:
        if source is not None:
            cb.upload_dir(source, exclude=exclude or ())
    except BaseException:
        cb.delete()
        raise
    finally:
        cb.close()
    print(cb.id)


def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List the server's codebases."""
    codebases = Codebase.list(api_url=api_url, api_key=api_key)
    if as_json:
        print(json.dumps([_json(c) for c in codebases]))
        return
    table = Table("id", "name", "version", "files", "size", box=None)
    for c in codebases:
        table.add_row(c.id, c.name, str(c.version), str(c.files), str(c.size))
    console.print(table)


def show(codebase_id: str = typer.Argument(..., help="Codebase id."),
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Print a codebase's details as JSON."""
    print(json.dumps(_json(Codebase.get(codebase_id, api_url=api_url, api_key=api_key)), indent=2))


def upload(codebase_id: str = typer.Argument(..., help="Codebase id."),
           local: Path = typer.Argument(..., exists=True, help="A local file or directory."),
           to: str = typer.Option("/", "--to", help="Where in the codebase: the file's path, or the directory "
                                                    "to unpack into."),
           exclude: list[str] = ExcludeOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Upload a file, or a directory's contents (as one tar stream)."""
    cb = Codebase.get(codebase_id, api_url=api_url, api_key=api_key)
    if local.is_dir():
        cb.upload_dir(local, into=to, exclude=exclude or ())
    else:
        target = to if to != "/" and not to.endswith("/") else to.rstrip("/") + "/" + local.name
        with open(local, "rb") as f:
            cb.upload_file(target, f)
    errors.print(f"[dim]{cb.id}: version {cb.version}, {cb.files} files[/]")


def files(codebase_id: str = typer.Argument(..., help="Codebase id."),
          path: str = typer.Option("/", "--path", help="Only below this directory."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List the files of a codebase."""
    entries = Codebase.get(codebase_id, api_url=api_url, api_key=api_key).list_files(path)
    if as_json:
        print(json.dumps([e.__dict__ for e in entries]))
        return
    for e in entries:
        print(e.path + ("/" if e.type == "dir" else ""))


def download(codebase_id: str = typer.Argument(..., help="Codebase id."),
             dest: Path = typer.Argument(..., help="Local directory to unpack into (made if missing)."),
             path: str = typer.Option("/", "--path", help="Only this directory of the codebase."),
             api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Download a codebase (or one directory of it) into a local directory."""
    Codebase.get(codebase_id, api_url=api_url, api_key=api_key).download(dest, path)


def rm(codebase_id: str = typer.Argument(..., help="Codebase id."),
       api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Delete a codebase (refused while running sandboxes mount it)."""
    if not Codebase.get(codebase_id, api_url=api_url, api_key=api_key).delete():
        errors.print(f"[dim]{codebase_id} was already gone[/]")


app.command()(_friendly(create))
app.command("ls")(_friendly(list_))
app.command()(_friendly(show))
app.command()(_friendly(upload))
app.command()(_friendly(files))
app.command()(_friendly(download))
app.command()(_friendly(rm))
