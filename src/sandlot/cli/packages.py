"""`sandlot packages install|uninstall|list|is-installed`: Python packages of a sandbox, thin over the
blocking SDK.

The sandbox stays offline: the server fetches the wheels through its own package index.
"""

from __future__ import annotations

import json

import typer

from ._common import ApiKey, ApiUrl, connect, console, error, friendly, note

app = typer.Typer(no_args_is_help=True, help="Install, remove and list a sandbox's Python packages.")


def _report(packages, verb: str, nothing: str) -> None:
    for p in packages:
        print(f"{verb} {p.name} {p.version}")
    if not packages:
        note(nothing)


def install(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
            names: list[str] = typer.Argument(None, help="Requirements: NAME or NAME==VERSION (ranges and "
                                                         "extras work too)."),
            requirements: str = typer.Option(None, "--requirements", "-r",
                                             help="Path of a requirements.txt inside the sandbox."),
            upgrade: bool = typer.Option(False, "--upgrade", "-U", help="Fetch the newest matching releases."),
            api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Install packages into a sandbox (system-wide), e.g. sandlot packages install ID tabulate six==1.16.0"""
    if not names and not requirements:
        raise typer.BadParameter("give package names or --requirements", param_hint="NAMES")
    sandbox = connect(sandbox_id, api_url, api_key)
    try:
        installed = []
        if names:
            installed += sandbox.packages.install_many(names, upgrade=upgrade)
        if requirements:
            installed += sandbox.packages.install_requirements(requirements, upgrade=upgrade)
    finally:
        sandbox.close()
    _report(installed, "installed", "nothing to install: already satisfied")


def uninstall(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
              names: list[str] = typer.Argument(..., help="Package names."),
              api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Uninstall packages from a sandbox."""
    sandbox = connect(sandbox_id, api_url, api_key)
    try:
        removed = sandbox.packages.uninstall(names)
    finally:
        sandbox.close()
    _report(removed, "uninstalled", "nothing to uninstall: not installed")


def list_(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON: [{\"name\", \"version\"}]."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List the Python packages installed in a sandbox."""
    sandbox = connect(sandbox_id, api_url, api_key)
    try:
        packages = sandbox.packages.list()
    finally:
        sandbox.close()
    if as_json:
        print(json.dumps([{"name": p.name, "version": p.version} for p in packages]))
        return
    from rich.table import Table

    table = Table("name", "version", box=None)
    for p in packages:
        table.add_row(p.name, p.version)
    console(markup=False).print(table)


def is_installed(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
                 name: str = typer.Argument(..., help="Package name (Foo_Bar and foo-bar are the same)."),
                 api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Exit 0 if a package is installed in a sandbox, 1 if not, 2 on errors (as grep), for scripts:
    sandlot packages is-installed ID six || sandlot packages install ID six"""
    from .._exceptions import SandlotError

    try:
        sandbox = connect(sandbox_id, api_url, api_key)
        try:
            installed = sandbox.packages.is_installed(name)
        finally:
            sandbox.close()
    except SandlotError as e:
        error(e.message or type(e).__name__)
        raise typer.Exit(2) from None
    note(f"{name} is {'' if installed else 'not '}installed")
    raise typer.Exit(0 if installed else 1)


app.command()(friendly(install))
app.command()(friendly(uninstall))
app.command("list")(friendly(list_))
app.command("is-installed")(is_installed)
