"""`sandlot template build|list|delete`: the root filesystems sandboxes start from.

Two kinds (docs/templates.md): sandlot's own recipes (base, code-interpreter...), built in the
server's state directory (like `sandlot keys`, `build NAME` works on it directly, not over the
API; a running server picks up a rebuilt template for new sandboxes), and templates built from a
Dockerfile (`build -f FILE NAME`), which the server builds for the API key's team, step by step in
sandboxes, through E2B's template API (the blocking SDK's `Template`).
"""

from __future__ import annotations

from pathlib import Path

import typer

import re

from ._common import ApiKey, ApiUrl, HomeOpt, JsonOpt, QuietOpt, console, error, friendly, not_found, print_json

app = typer.Typer(no_args_is_help=True, help="Build and list templates.")


def _store(home: Path | None):
    from ..server.config import Config
    from ..templates import TemplateStore

    return TemplateStore(home or Config().home)


STEP = re.compile(r"^\[(\d+)/(\d+)\] ")  # the server's line for each step of a build


@app.command()
@friendly
def build(name: str = typer.Argument(..., help="Template name (see `sandlot template list`); with -f, NAME[:TAG]."),
          file: Path = typer.Option(None, "--file", "-f", help="Build NAME from this Dockerfile, on the server."),
          context: Path = typer.Option(None, "--context", help="Where COPY reads from (default: the Dockerfile's "
                                                               "directory)."),
          tags: list[str] = typer.Option(None, "--tag", "-t", help="Also tag the build (repeatable)."),
          no_cache: bool = typer.Option(False, "--no-cache", help="Run every step again (with -f)."),
          if_stale: bool = typer.Option(False, "--if-stale",
                                        help="Only build it if it is missing or its recipe changed."),
          home: Path = HomeOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """(Re)build a template; running sandboxes keep the version they started from."""
    from ..templates import progress_bar

    if file is not None:
        return _build_dockerfile(name, file, context, tags or [], no_cache, api_url, api_key)
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
@friendly
def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, home: Path = HomeOpt,
          api_url: str = typer.Option(None, "--api-url", envvar="SANDLOT_API_URL",
                                      help="Also list your team's templates on this server."),
          api_key: str = ApiKey) -> None:
    """List sandlot's templates and whether they are built (and, with a server, your team's)."""
    store = _store(home)
    rows = []
    for name in store.list():
        manifest = store.manifest(name)
        rows.append({"name": name, "status": _status(store, name, manifest),
                     "built_at": (manifest or {}).get("built_at"),
                     "build_seconds": (manifest or {}).get("build_seconds")})
    if api_url:  # the team's templates built from recipes: their default build's state
        from .. import Template

        rows += [{"name": t.name, "status": t.status, "built_at": t.updated_at, "build_seconds": None,
                  "template_id": t.template_id, "tags": t.tags} for t in Template.list(api_url=api_url, api_key=api_key)]
    if as_json:
        print_json(rows)
        return
    if quiet:
        for row in rows:
            print(row["name"])
        return
    from rich.table import Table

    colour = {"built": "green", "outdated": "yellow", "not built": "dim", "ready": "green", "building": "yellow",
              "waiting": "yellow", "error": "red"}
    table = Table("name", "status", "built at", "build time", box=None)
    for row in rows:
        seconds = row["build_seconds"]
        table.add_row(row["name"], f"[{colour[row['status']]}]{row['status']}[/]", row["built_at"] or "",
                      f"{seconds}s" if seconds else "")
    console().print(table)


def _build_dockerfile(name: str, file: Path, context: Path | None, tags: list[str], no_cache: bool, api_url: str,
                      api_key: str | None) -> None:
    """A Dockerfile built by the server: a bar on a terminal (the step, its output's last line), the
    log on stderr otherwise; failures show the step's output."""
    from .. import Template
    from ..templates import progress_bar

    err = console(stderr=True, markup=False)
    where = {"done": 0, "total": 0}
    with progress_bar(f"template {name}", console=err) as progress:
        def on_log(entry) -> None:
            if m := STEP.match(entry.message):
                where["done"], where["total"] = int(m[1]) - 1, int(m[2]) + 1
            if entry.message == "CACHED" or entry.message.startswith("done in"):
                where["done"] += 1
            progress(where["done"], where["total"], entry.message[:70])
            if not err.is_terminal or STEP.match(entry.message) or entry.level == "error":
                err.print(entry.message)

        info = Template.build(name, dockerfile=file, context=context, tags=tags or None, skip_cache=no_cache,
                              on_log=on_log, api_url=api_url, api_key=api_key)
    console().print(f"[green]built[/] {info.name} ({', '.join(info.tags)}): template {info.template_id}, "
                    f"build {info.build_id}")


@app.command()
@friendly
def delete(name: str = typer.Argument(..., help="A template built from a Dockerfile or the SDK's Template."),
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Delete one of your team's templates (all its tags; sandboxes made from it keep running)."""
    from .. import Template

    if not Template.delete(name, api_url=api_url, api_key=api_key):
        error(not_found("template", name))
        raise typer.Exit(1)
    print(f"deleted {name}")
