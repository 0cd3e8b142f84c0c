"""`sandlot ca`: the certificate of the CA this server signs its TLS certificate with (`serve --tls
local-ca`), for clients to trust. Read from the state directory, as `sandlot keys` is; remote
clients fetch it from GET /ca.pem (docs/configuration.md, "TLS")."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import HomeOpt, error


def ca(home: Path = HomeOpt,
       path: bool = typer.Option(False, "--path", help="Print where the certificate is instead of the PEM.")) -> None:
    """Print the local CA's certificate (PEM) that clients trust for `serve --tls local-ca`."""
    from ..server.config import default_home
    from ..server.tls import CA_DIR

    cert = (home or default_home()) / CA_DIR / "ca.pem"
    try:
        pem = cert.read_text()
    except FileNotFoundError:
        error(f"no local CA in {cert.parent}: the server makes it on its first start with --tls local-ca")
        raise typer.Exit(1) from None
    typer.echo(str(cert) if path else pem, nl=path)


def register(app: typer.Typer) -> None:
    app.command()(ca)
