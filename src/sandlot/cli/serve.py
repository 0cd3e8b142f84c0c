"""`sandlot serve`: run the control plane (settings: server/config.py, docs/configuration.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


console = Console(stderr=True)


def serve(
    host: str = typer.Option(None, help="Address to listen on ($SANDLOT_HOST)."),
    port: int = typer.Option(None, help="Port for the API and all sandbox traffic ($SANDLOT_PORT)."),
    home: Path = typer.Option(None, help="State directory ($SANDLOT_HOME)."),
    pool_size: int = typer.Option(None, help="Warm sandboxes kept per template ($SANDLOT_POOL_SIZE)."),
    log_level: str = typer.Option(None, help="debug, info, warning or error ($SANDLOT_LOG_LEVEL)."),
    keep_sandboxes: bool = typer.Option(False, help="On stop, leave sandboxes running for the next start to adopt."),
    domain: str = typer.Option(None, help="Domain of sandbox hosts, `{port}-{id}.{domain}`, e.g. localhost:3000 ($SANDLOT_DOMAIN)."),
    tls: str = typer.Option(None, help="TLS on the port (API and sandbox ports): off, or local-ca (a certificate "
                            "for the --domain signed by this server's CA; `sandlot ca` prints it) ($SANDLOT_TLS)."),
    tls_cert: Path = typer.Option(None, help="TLS with this certificate chain (PEM; with --tls-key) ($SANDLOT_TLS_CERT)."),
    tls_key: Path = typer.Option(None, help="The private key of --tls-cert (PEM, unencrypted) ($SANDLOT_TLS_KEY)."),
    config_file: Path = typer.Option(None, "--config", help="A TOML file of settings (or $SANDLOT_CONFIG)."),
    install_service: bool = typer.Option(False, help="Write a systemd unit that runs this command, then exit."),
    unit_path: Path = typer.Option(None, help="Where --install-service writes the unit (default "
                                   "/etc/systemd/system/sandlot.service; a user unit when not root)."),
) -> None:
    """Run the sandlot server: REST control plane + E2B-compatible sandbox traffic on one port.

    Flags override $SANDLOT_* variables, which override the --config file (docs/configuration.md).
    """
    from ..server import logs
    from ..server.config import Config, ConfigError
    from ..server.tls import server_context, uncovered

    try:
        config = Config.from_env(config_file, host=host, port=port, home=home, pool_size=pool_size,
                                 log_level=log_level, keep_sandboxes=keep_sandboxes or None, domain=domain,
                                 tls=tls, tls_cert=tls_cert, tls_key=tls_key)
    except ConfigError as e:
        _bad_setting(e)
    if install_service:
        from .systemd import install

        path = install(unit_path, config, config_file)
        console.print(f"wrote {path}; start it with: systemctl daemon-reload && systemctl enable --now {path.stem}")
        return
    try:
        tls_context = server_context(config)  # a certificate that cannot be used stops it here
    except ConfigError as e:
        _bad_setting(e)
    logs.setup(config.log_level, config.log_format)
    for name in Config.unknown_env():
        logging.getLogger("sandlot.config").warning("%s is not a sandlot setting: ignored", name)
    if warning := uncovered(config):
        logging.getLogger("sandlot.config").warning("%s", warning)
    _run(config, tls_context)


def _bad_setting(e) -> NoReturn:
    console.print(f"[red]error:[/] {escape(e.message)}", highlight=False)
    raise typer.Exit(2) from None


def _run(config, tls_context) -> None:
    from ..server import listener, tls
    from ..server.app import build_app, ensure_first_key
    from ..templates import TemplateStore
    from ..templates.progress import build_in_view

    build_in_view(TemplateStore(config.home), config.default_template, console)
    app = build_app(config, _extensions(config))
    key = ensure_first_key(app.state.store, config)
    if config.log_format == "json":  # every line of the log is JSON
        log = logging.getLogger("sandlot.server")
        if key:
            log.warning("created the first API key (shown once, store it now): %s", key)
        log.info("sandlot listening on %s://%s:%d (state in %s)", config.scheme, config.host, config.port, config.home)
    else:
        if key:
            console.print(f"[bold green]Created the first API key[/] (shown once, store it now):\n  {key}")
        console.print(f"sandlot listening on {config.scheme}://{config.host}:{config.port}  (state in {config.home})")
        if config.tls_mode == "local-ca":
            console.print(f"TLS certificate signed by this server's CA: trust {tls.local_ca(config.home).cert_path} "
                          "(also GET /ca.pem, `sandlot ca`)")
    if tls_context is not None:
        tls.keep_renewed(tls_context, config)
    listener.run(app, config, on_drop=lambda reason: app.state.metrics.dropped_connections.labels(reason).inc(),
                 tls=tls_context)


def _extensions(config) -> dict:
    """Front doors above the server that `serve` composes into it: /mcp (the tools over MCP), if
    enabled and the `mcp` extra is installed. Its tools call this server over loopback: with
    `--tls local-ca` they trust the server's own CA; with a given certificate, the one named by
    $SANDLOT_CA_FILE or the system's (docs/mcp.md)."""
    if not config.mcp:
        return {}
    try:
        from ..tools.mcp_server import server_endpoint
    except ImportError:  # the `mcp` extra is not installed
        return {}
    from ..server import tls

    own_ca = str(config.home / tls.CA_DIR / "ca.pem") if config.tls_mode == "local-ca" else None
    return {"/mcp": server_endpoint(ca_file=own_ca)}
