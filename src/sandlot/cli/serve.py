"""`sandlot serve`: run the control plane."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from ..server.config import Config

console = Console(stderr=True)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(3000, help="Port for the API and all sandbox traffic."),
    home: Path = typer.Option(None, help="State directory (default /var/lib/sandlot, or $SANDLOT_HOME)."),
    pool_size: int = typer.Option(None, help="Warm sandboxes kept per template (default 2)."),
    log_level: str = typer.Option("info", help="debug, info, warning, error."),
    keep_sandboxes: bool = typer.Option(False, help="On stop, leave sandboxes running for the next start to adopt."),
    domain: str = typer.Option(None, help="Domain of sandbox hosts, `{port}-{id}.{domain}` (e.g. localhost:3000)."),
) -> None:
    """Run the sandlot server: REST control plane + E2B-compatible sandbox traffic on one port."""
    import uvicorn

    from ..server.app import build_app, ensure_first_key
    from ..templates import TemplateStore
    from ..templates.progress import build_in_view

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = Config(host=host, port=port)
    except ValueError as e:  # a malformed SANDLOT_* setting
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    if home:
        config.home = home
    config.kill_on_shutdown = not keep_sandboxes
    if domain:
        config.domain = domain
    if pool_size is not None:
        config.pool_size = pool_size
    build_in_view(TemplateStore(config.home), config.default_template, console)
    app = build_app(config)
    if key := ensure_first_key(app.state.store, config):
        console.print(f"[bold green]Created the first API key[/] (shown once, store it now):\n  {key}")
    console.print(f"sandlot listening on http://{host}:{port}  (state in {config.home})")
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False)
