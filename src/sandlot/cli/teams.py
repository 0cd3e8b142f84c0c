"""`sandlot teams create|list|quotas|delete`: the teams keys and sandboxes belong to (server/teams.py).

Like `sandlot keys`, these work on the server's state database directly; a running server sees the
changes at its next request. Each change is written to the audit trail.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import HomeOpt, JsonOpt, QuietOpt, console, friendly, print_json
from .keys import _store, audited

app = typer.Typer(no_args_is_help=True, help="Manage teams and their quotas.")

NONE = "none"
MaxSandboxes = typer.Option(None, "--max-sandboxes", help="Sandboxes running at once ('none': no limit).")
MaxMemory = typer.Option(None, "--max-memory-mb", help="Memory limits of its running and paused sandboxes, "
                                                       "summed, in MiB ('none': no limit).")
MaxDisk = typer.Option(None, "--max-disk-mb", help="Disk limits of its running and paused sandboxes, summed, "
                                                   "in MiB ('none': no limit).")


def _quotas(max_sandboxes: str | None, max_memory_mb: str | None, max_disk_mb: str | None) -> dict:
    """The quotas given: a whole number, or 'none' for no limit."""
    given = {}
    for name, value in (("max_sandboxes", max_sandboxes), ("max_memory_mb", max_memory_mb),
                        ("max_disk_mb", max_disk_mb)):
        if value is None:
            continue
        if value.strip().lower() == NONE:
            given[name] = None
        elif value.strip().isascii() and value.strip().isdigit():
            given[name] = int(value)
        else:
            raise typer.BadParameter(f"expected a whole number or 'none', got {value!r}",
                                     param_hint="--" + name.replace("_", "-"))
    return given


def _json(team, usage: dict | None = None) -> dict:
    out = {"id": team.id, "name": team.name, **team.quotas()}
    if usage is not None:
        out["usage"] = usage
    return out


def _usage(store, team_id: str) -> dict:
    """What the team's sandboxes hold now, as the server's records say."""
    import json

    rows = store.db.execute("SELECT state, limits FROM sandboxes WHERE team = ? AND state != 'killed'",
                            (team_id,)).fetchall()
    limits = [json.loads(r[1]) for r in rows]
    return {"running": sum(r[0] == "running" for r in rows), "paused": sum(r[0] == "paused" for r in rows),
            "memory_mb": sum(x.get("memory_mb", 0) for x in limits), "disk_mb": sum(x.get("disk_mb", 0) for x in limits)}


@app.command()
@friendly
def create(name: str = typer.Argument(..., help="Team name: a-z, 0-9, '_', '.', '-'."),
           max_sandboxes: str = MaxSandboxes, max_memory_mb: str = MaxMemory, max_disk_mb: str = MaxDisk,
           as_json: bool = JsonOpt, home: Path = HomeOpt) -> None:
    """Create a team (then give it keys: `sandlot keys create NAME --team TEAM`)."""
    store = _store(home)
    team = store.teams.create(name, **_quotas(max_sandboxes, max_memory_mb, max_disk_mb))
    audited(store, "team.create", team=team.id, detail={"name": name, **team.quotas()})
    if as_json:
        print_json(_json(team))
    else:
        print(team.id)


@app.command("list")
def list_(as_json: bool = JsonOpt, quiet: bool = QuietOpt, home: Path = HomeOpt) -> None:
    """List teams, their quotas and what their sandboxes hold now."""
    store = _store(home)
    teams = store.teams.list()
    if as_json:
        print_json([_json(t, _usage(store, t.id)) for t in teams])
        return
    if quiet:
        for t in teams:
            print(t.name)
        return
    from rich.table import Table

    table = Table(box=None)
    for column in ("name", "id", "running", "max sandboxes", "memory MiB", "max memory", "disk MiB", "max disk"):
        table.add_column(column, no_wrap=True)
    shown = lambda v: "-" if v is None else str(v)  # noqa: E731
    for t in teams:
        u = _usage(store, t.id)
        table.add_row(t.name, t.id, str(u["running"]), shown(t.max_sandboxes), str(u["memory_mb"]),
                      shown(t.max_memory_mb), str(u["disk_mb"]), shown(t.max_disk_mb))
    console(markup=False).print(table)


@app.command()
@friendly
def quotas(name: str = typer.Argument(..., help="Team name or id."),
           max_sandboxes: str = MaxSandboxes, max_memory_mb: str = MaxMemory, max_disk_mb: str = MaxDisk,
           home: Path = HomeOpt) -> None:
    """Show a team's quotas and usage; with options, set them first (checked at the next create or
    resume: sandboxes already running are not stopped)."""
    store = _store(home)
    given = _quotas(max_sandboxes, max_memory_mb, max_disk_mb)
    team = store.teams.set_quotas(name, **given) if given else store.teams.get(name)
    if given:
        audited(store, "team.quotas", team=team.id, detail=given)
    print_json(_json(team, _usage(store, team.id)))


@app.command()
@friendly
def delete(name: str = typer.Argument(..., help="Team name or id."), home: Path = HomeOpt) -> None:
    """Delete a team that has no sandbox left; its keys are revoked."""
    store = _store(home)
    team = store.teams.get(name)
    revoked = store.teams.delete(team.id)
    audited(store, "team.delete", team=team.id, detail={"name": team.name, "revoked_keys": revoked})
    print(f"deleted team {team.name} ({revoked} key(s) revoked)")
