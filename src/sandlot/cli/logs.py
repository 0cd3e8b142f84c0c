"""`sandlot logs ID`: a sandbox's log (lifecycle events, processes started and ended)."""

from __future__ import annotations

import sys
import time

import typer

from ._common import EXIT_INTERRUPTED, ApiKey, ApiUrl, clean, friendly, print_json

POLL = 0.5  # seconds between looks with --follow


def _line(entry) -> str:
    when = entry.timestamp.astimezone().isoformat(timespec="milliseconds") if entry.timestamp else ""
    return clean(f"{when} {entry.level.upper():5} {entry.fields.get('logger', ''):9} {entry.message}")


def _ended(entry) -> bool:
    return entry.fields.get("logger") == "lifecycle" and entry.message.startswith("ended")


@friendly
def logs(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries until the "
                                                                   "sandbox ends."),
         level: str = typer.Option(None, help="Least severe level shown: debug, info, warn, error."),
         since: float = typer.Option(None, help="Only entries of the last SINCE seconds."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON: an array, or with --follow one "
                                                            "object a line."),
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Show a sandbox's log: lifecycle events and processes.

    Created, paused, resumed, ended (and why), and each process started through the API with how
    it ended. Readable for an hour after the sandbox ended (the server keeps the last 200).
    """
    from datetime import timedelta

    from .. import Sandbox

    start = time.time() - since if since else None
    entries = Sandbox.get_logs(sandbox_id, start=start, level=level, api_url=api_url, api_key=api_key)
    if as_json and not follow:
        print_json(entries)
        return
    try:
        while True:
            for entry in entries:
                if as_json:
                    print_json(entry)
                else:
                    print(_line(entry))
            sys.stdout.flush()
            if not follow or any(map(_ended, entries)):
                return
            if entries:
                start = entries[-1].timestamp + timedelta(milliseconds=1)
            time.sleep(POLL)
            entries = Sandbox.get_logs(sandbox_id, start=start, level=level, api_url=api_url, api_key=api_key)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def register(app: typer.Typer) -> None:
    app.command()(logs)
