"""`sandlot codebase create|ls|show|upload|files|download|rm`: codebases, the file trees sandboxes
mount at /workspace with path permissions (docs/codebases.md), thin over the blocking SDK."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import ApiKey, ApiUrl, JsonOpt, QuietOpt, console, friendly, note, print_json

app = typer.Typer(no_args_is_help=True, help="Codebases: file trees that sandboxes mount at /workspace.")
ExcludeOpt = typer.Option(None, "--exclude", "-x", help="A name to leave out at any depth (repeatable).")


def _get(codebase_id: str, api_url: str, api_key: str | None):
    from .. import Codebase

    return Codebase.get(codebase_id, api_url=api_url, api_key=api_key)


def _json(cb) -> dict:
    return {"id": cb.id, "name": cb.name, "team": cb.team, "version": cb.version, "files": cb.files,
            "size": cb.size, "created_at": cb.created_at.isoformat()}


def create(name: str = typer.Argument(..., help="A name for it (free text)."),
           source: Path = typer.Option(None, "--from", help="A local directory to upload into it."),
           exclude: list[str] = ExcludeOpt, as_json: bool = JsonOpt,
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Create a codebase (from a local directory with --from) and print its id."""
    from .. import Codebase

    cb = Codebase.create(name, api_url=api_url, api_key=api_key)
    try:
        if source is not None:
            cb.upload_dir(source, exclude=exclude or ())
    except BaseException:
        cb.delete()
        raise
    finally:
        cb.close()
    if as_json:
        print_json(_json(cb))
    else:
        print(cb.id)


def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List your team's codebases, oldest first."""
    from .. import Codebase

    codebases = Codebase.list(api_url=api_url, api_key=api_key)
    if as_json:
        print_json([_json(c) for c in codebases])
        return
    if quiet:
        for c in codebases:
            print(c.id)
        return
    if not codebases:
        note("no codebases")
        return
    from rich.table import Table

    table = Table("id", "name", "version", "files", "size", box=None)
    for c in codebases:
        table.add_row(c.id, c.name, str(c.version), str(c.files), str(c.size))
    console(markup=False).print(table)


def show(codebase_id: str = typer.Argument(..., help="Codebase id."),
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Print a codebase's details as JSON."""
    print_json(_json(_get(codebase_id, api_url, api_key)))


def upload(codebase_id: str = typer.Argument(..., help="Codebase id."),
           local: Path = typer.Argument(..., exists=True, help="A local file or directory."),
           to: str = typer.Option("/", "--to", help="Where in the codebase: the file's path, or the directory "
                                                    "to unpack into."),
           exclude: list[str] = ExcludeOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Upload a file, or a directory's contents (as one tar stream)."""
    cb = _get(codebase_id, api_url, api_key)
    if local.is_dir():
        cb.upload_dir(local, into=to, exclude=exclude or ())
    else:
        target = to if to != "/" and not to.endswith("/") else to.rstrip("/") + "/" + local.name
        with open(local, "rb") as f:
            cb.upload_file(target, f)
    note(f"{cb.id}: version {cb.version}, {cb.files} files")


def files(codebase_id: str = typer.Argument(..., help="Codebase id."),
          path: str = typer.Option("/", "--path", help="Only below this directory."),
          as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List the files of a codebase."""
    entries = _get(codebase_id, api_url, api_key).list_files(path)
    if as_json:
        print_json(entries)
        return
    for e in entries:
        print(e.path + ("/" if e.type == "dir" else ""))


def download(codebase_id: str = typer.Argument(..., help="Codebase id."),
             dest: Path = typer.Argument(..., help="Local directory to unpack into (made if missing)."),
             path: str = typer.Option("/", "--path", help="Only this directory of the codebase."),
             api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Download a codebase (or one directory of it) into a local directory."""
    _get(codebase_id, api_url, api_key).download(dest, path)


def rm(codebase_id: str = typer.Argument(..., help="Codebase id."),
       api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Delete a codebase (refused while running sandboxes mount it)."""
    if not _get(codebase_id, api_url, api_key).delete():
        note(f"{codebase_id} was already gone")


app.command()(friendly(create))
app.command("ls")(friendly(list_))
app.command()(friendly(show))
app.command()(friendly(upload))
app.command()(friendly(files))
app.command()(friendly(download))
app.command()(friendly(rm))
