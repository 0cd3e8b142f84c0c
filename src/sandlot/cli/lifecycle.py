"""`sandlot pause ID...` and `sandlot resume ID...`: freeze sandboxes in memory, and continue them."""

from __future__ import annotations

import typer

from ._common import ApiKey, ApiUrl, error, friendly, note

Ids = typer.Argument(..., help="Sandbox ids.")


def _each(sandbox_ids: list[str], step) -> None:
    """`step(id)` for every id; errors are reported as they come, and exit 1 at the end."""
    from .._exceptions import SandlotError

    failed = False
    for sandbox_id in sandbox_ids:
        try:
            step(sandbox_id)
        except SandlotError as e:
            error(e.message or type(e).__name__)
            failed = True
    raise typer.Exit(1 if failed else 0)


@friendly
def pause(sandbox_ids: list[str] = Ids, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Pause sandboxes (frozen in memory until resumed).

    Their processes stop where they are, with their memory and files; the timeout does not run
    meanwhile. `sandlot resume` (or any command that connects) continues them.
    """
    from .. import Sandbox

    def step(sandbox_id: str) -> None:
        if Sandbox.pause(sandbox_id, api_url=api_url, api_key=api_key):
            print(f"paused {sandbox_id}")
        else:
            note(f"{sandbox_id} is already paused")

    _each(sandbox_ids, step)


@friendly
def resume(sandbox_ids: list[str] = Ids, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Resume paused sandboxes.

    Each runs again for the server's default timeout.
    """
    from .. import Sandbox

    def step(sandbox_id: str) -> None:
        if Sandbox.get_info(sandbox_id, api_url=api_url, api_key=api_key).state == "running":
            note(f"{sandbox_id} is already running")
            return
        Sandbox.connect(sandbox_id, api_url=api_url, api_key=api_key).close()
        print(f"resumed {sandbox_id}")

    _each(sandbox_ids, step)


def register(app: typer.Typer) -> None:
    app.command()(pause)
    app.command()(resume)
