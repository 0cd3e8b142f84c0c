"""`sandlot metrics ID` (a sandbox's usage over time) and `sandlot stats` (every sandbox's now)."""

from __future__ import annotations

import dataclasses
import time

import typer

from ._common import ApiKey, ApiUrl, JsonOpt, MetadataOpt, console, error, friendly, note, print_json
from .ls import listed

RECENT = 30.0  # seconds back that `stats` asks for: the server adds a reading taken now


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def _table(columns, rows) -> None:
    from rich.table import Table

    table = Table(*columns, box=None)
    for row in rows:
        table.add_row(*row)
    console(markup=False).print(table)


def _usage(m) -> tuple[str, str, str]:
    return f"{m.cpu_used_pct:.1f}%", f"{_mib(m.mem_used)} / {_mib(m.mem_total)}", \
        f"{_mib(m.disk_used)} / {_mib(m.disk_total)}"


@friendly
def metrics(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
            since: float = typer.Option(None, help="Only samples of the last SINCE seconds."),
            as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Show a sandbox's CPU, memory and disk use over time.

    Oldest first: a sample every 5 s (the last hour is kept) and one taken now. CPU is the share
    of the sandbox's own CPU limit.
    """
    from .. import Sandbox

    samples = Sandbox.get_metrics(sandbox_id, start=time.time() - since if since else None,
                                  api_url=api_url, api_key=api_key)
    if as_json:
        print_json(samples)
        return
    _table(("time", "cpu", "memory", "disk"),
           [(m.timestamp.astimezone().strftime("%H:%M:%S") if m.timestamp else "", *_usage(m)) for m in samples])


@friendly
def stats(sandbox_ids: list[str] = typer.Argument(None, help="Sandbox ids (default: every running one)."),
          metadata: list[str] = MetadataOpt, as_json: bool = JsonOpt,
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Show what each running sandbox uses now (as `docker stats --no-stream`)."""
    from .. import Sandbox
    from .._exceptions import NotFound

    named = bool(sandbox_ids)
    if not named:
        sandbox_ids = [info.sandbox_id for info in listed(metadata, "running", api_url, api_key)]
    now, missing = [], False
    for sandbox_id in sandbox_ids:
        try:
            samples = Sandbox.get_metrics(sandbox_id, start=time.time() - RECENT, api_url=api_url, api_key=api_key)
        except NotFound as e:
            if named:  # (one listed may just have ended)
                error(e.message)
                missing = True
            continue
        if samples:
            now.append((sandbox_id, samples[-1]))
    if as_json:
        print_json([{"sandbox_id": sid, **dataclasses.asdict(m)} for sid, m in now])
    elif now:
        _table(("id", "cpu", "memory", "disk"), [(sid, *_usage(m)) for sid, m in now])
    elif not missing:
        note("no running sandboxes")
    raise typer.Exit(1 if missing else 0)


def register(app: typer.Typer) -> None:
    app.command()(metrics)
    app.command()(stats)
