"""`sandlot kill ID...` or `sandlot kill --all [filters]`: kill sandboxes."""

from __future__ import annotations

import typer

from ._common import ApiKey, ApiUrl, MetadataOpt, error, friendly, not_found, note
from .ls import StateOpt, listed


@friendly
def kill(sandbox_ids: list[str] = typer.Argument(None, help="Sandbox ids."),
         all_: bool = typer.Option(False, "--all", "-a", help="Kill every sandbox (that the filters match)."),
         state: str = StateOpt, metadata: list[str] = MetadataOpt,
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Kill sandboxes by id, or --all (that match the filters).

    Prints `killed ID` for each; exits 1 if one was not found. Example:
    sandlot kill --all -m owner=ci -s paused
    """
    if all_ == bool(sandbox_ids):
        raise typer.BadParameter("give sandbox ids or --all, not both" if all_ else "give sandbox ids or --all")
    if (state or metadata) and not all_:
        raise typer.BadParameter("--state and --metadata filter --all")
    from .. import Sandbox

    if all_:
        sandbox_ids = [info.sandbox_id for info in listed(metadata, state, api_url, api_key)]
        if not sandbox_ids:
            note("no sandboxes")
    missing = False
    for sandbox_id in sandbox_ids:
        if Sandbox.kill(sandbox_id, api_url=api_url, api_key=api_key):
            print(f"killed {sandbox_id}")
        elif not all_:  # one that ended meanwhile is no error for --all
            error(not_found("sandbox", sandbox_id))
            missing = True
    raise typer.Exit(1 if missing else 0)


def register(app: typer.Typer) -> None:
    app.command()(kill)
