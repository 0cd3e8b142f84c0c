"""`sandlot ls`: the sandboxes on the server, newest first."""

from __future__ import annotations

from datetime import datetime, timezone

import typer

from ._common import ApiKey, ApiUrl, JsonOpt, MetadataOpt, QuietOpt, console, friendly, note, pairs, print_json

StateOpt = typer.Option(None, "--state", "-s", help="running, paused, or both comma-separated.")


def ago_or_in(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = int((when - datetime.now(timezone.utc)).total_seconds())
    m, s = divmod(abs(seconds), 60)
    h, m = divmod(m, 60)
    span = f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def listed(metadata: list[str] | None, state: str | None, api_url: str, api_key: str | None) -> list:
    """SandboxInfo of every sandbox matching the filters."""
    from .. import Sandbox

    return list(Sandbox.list(metadata=pairs(metadata, "--metadata"), state=state, api_url=api_url,
                             api_key=api_key))


@friendly
def ls(state: str = StateOpt, metadata: list[str] = MetadataOpt, as_json: bool = JsonOpt, quiet: bool = QuietOpt,
       api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List sandboxes, newest first."""
    infos = listed(metadata, state, api_url, api_key)
    if as_json:
        print_json(infos)
        return
    if quiet:
        for info in infos:
            print(info.sandbox_id)
        return
    if not infos:
        note("no sandboxes")
        return
    from rich.table import Column, Table

    # ids are never cut (they are copied into other commands): long metadata wraps instead
    table = Table(*(Column(name, no_wrap=True) for name in ("id", "template", "state", "started", "ends")),
                  Column("metadata", overflow="fold"), box=None)
    for info in infos:
        table.add_row(info.sandbox_id, info.template_id, info.state, ago_or_in(info.started_at),
                      ago_or_in(info.end_at), " ".join(f"{k}={v}" for k, v in info.metadata.items()))
    console(markup=False).print(table)


def register(app: typer.Typer) -> None:
    app.command()(ls)
