"""What the commands share: options, K=V parsing, error and JSON output, the server connection.

Imports stay light here and in every command module (typer and the standard library): the SDK,
rich and the server's modules are imported inside the commands that use them, so `sandlot --help`
or a shell completion does not pay ~0.4 s for them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
import sys
from datetime import datetime

import typer

ApiUrl = typer.Option("http://127.0.0.1:3000", "--api-url", envvar="SANDLOT_API_URL", help="Server URL.")
ApiKey = typer.Option(None, "--api-key", envvar="SANDLOT_API_KEY", help="API key.")
EnvOpt = typer.Option(None, "--env", "-e", help="Environment variable K=V (repeatable).")
MetadataOpt = typer.Option(None, "--metadata", "-m", help="Metadata K=V (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print JSON (for scripts).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print ids only, one a line.")
HomeOpt = typer.Option(None, help="State directory (default /var/lib/sandlot, or $SANDLOT_HOME).")

EXIT_TIMEOUT = 124  # as GNU timeout(1)
EXIT_INTERRUPTED = 130

# C0 controls but tab and newline, DEL and C1: a message may quote what a sandbox named (a path)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """["K=V", ...] -> {K: V}; a malformed item is a usage error (exit 2)."""
    found = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {item!r}", param_hint=what)
        found[key] = value
    return found


def clean(text: str) -> str:
    """`text` with its control characters (but tab and newline) shown as `?`."""
    return _CONTROLS.sub("?", text)


def error(message: str) -> None:
    """`error: message` on stderr, without control characters."""
    typer.secho("error:", fg="red", err=True, nl=False)
    typer.echo(" " + clean(message), err=True)


def note(message: str) -> None:
    """A dim remark on stderr ("no sandboxes"), kept out of the output scripts read."""
    typer.secho(clean(message), dim=True, err=True)


def not_found(kind: str, name: str) -> str:
    """The one wording of "not found", as the server words it."""
    return f"{kind} \"{name}\" not found"


def friendly(command):
    """sandlot errors, and local file errors (a local path in the way, no permission), end the
    command with a one-line message and exit code 1 (a timeout: 124), not a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        from .._exceptions import SandlotError, TimeoutError

        try:
            return command(*args, **kwargs)
        except SandlotError as e:
            error(e.message or type(e).__name__)
            raise typer.Exit(EXIT_TIMEOUT if isinstance(e, TimeoutError) else 1) from None
        except OSError as e:
            error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
            raise typer.Exit(1) from None
    return run


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(value) -> None:
    """`value` (dataclasses, lists, dicts, datetimes) as one JSON document on stdout."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    elif isinstance(value, list):
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
    sys.stdout.write(json.dumps(value, default=_jsonable) + "\n")


def console(stderr: bool = False, markup: bool = True):
    """A rich console (tables, progress bars), imported on first use. `markup=False` for tables
    of what users or sandboxes named (a `[red]` there is text)."""
    from rich.console import Console

    return Console(stderr=stderr, markup=markup, highlight=markup)


def connect(sandbox_id: str, api_url: str, api_key: str | None):
    """The blocking SDK's handle on a running sandbox (a paused one is resumed, as E2B does)."""
    from .. import Sandbox

    return Sandbox.connect(sandbox_id, api_url=api_url, api_key=api_key)
