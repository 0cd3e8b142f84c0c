"""TLS on the listener: off by default; a given certificate and key; or a leaf signed by a CA local
to this server (certs.LocalCA, kept in <home>/ca/proxy).

The port proxy shares the API's listener (one port, requests told apart by Host: proxy.py), so
TLS covers all of it: the control plane, envd's routes and every proxied sandbox port. The local
CA's leaf names `{domain}` and `*.{domain}` (what E2B's `get_host(port)` and `api.{domain}` are),
localhost and the loopback addresses, and the listening address when it is a specific one. Clients
trust the CA's certificate: `GET /ca.pem` (public, as a certificate is) or `sandlot ca`.

The local CA's leaf is made at each start and renewed weekly in place (it lasts 90 days); a given
certificate is the operator's to renew (a restart loads it again).
Only HTTP/1.1 is offered (ALPN), as on plain HTTP: the e2b SDK's transport would otherwise ask
for HTTP/2, which uvicorn does not speak.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import Response

from .. import _exceptions as E
from .certs import LocalCA, server_context_from_pem
from .config import Config, ConfigError

CA_DIR = Path("ca") / "proxy"
CA_LABEL = "sandlot proxy CA"
RENEW_EVERY = 7 * 24 * 3600.0  # the local CA's leaves last 90 days (certs.py): renewed long before

log = logging.getLogger("sandlot.tls")


def local_ca(home: Path) -> LocalCA:
    """The server's CA for its listener (made on first use)."""
    return LocalCA(home / CA_DIR, label=CA_LABEL)


def names(config: Config) -> tuple[str, ...]:
    """What the local CA's leaf is for."""
    found = []
    if config.domain:
        domain = config.domain.rsplit(":", 1)[0].lower()
        found += [domain, f"*.{domain}"]
    found += ["localhost", "127.0.0.1", "::1"]
    host = config.host.strip("[]")
    try:
        specific = not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        specific = bool(host)
    if specific and host not in found:
        found.append(host)
    return tuple(dict.fromkeys(found))


def server_context(config: Config) -> ssl.SSLContext | None:
    """The listener's TLS context, None for plain HTTP; a ConfigError that names the setting and
    the file when a given certificate or key cannot be used."""
    mode = config.tls_mode
    if mode == "off":
        return None
    if mode == "local-ca":
        ctx = server_context_from_pem(*local_ca(config.home).leaf(*names(config)))
    else:
        ctx = _given(config.tls_cert, config.tls_key)  # type: ignore[arg-type]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def uncovered(config: Config) -> str | None:
    """A warning when a given certificate does not name the sandbox hosts `*.{domain}` (clients
    would refuse them; the API may still be all the operator wants over TLS)."""
    if config.tls_mode != "cert" or not config.domain:
        return None
    wanted = "*." + config.domain.rsplit(":", 1)[0].lower()
    leaf = x509.load_pem_x509_certificates(config.tls_cert.read_bytes())[0]  # type: ignore[union-attr]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        names = set()
    if wanted in names:
        return None
    return (f"the certificate in --tls-cert {config.tls_cert} does not name {wanted}: TLS clients will refuse "
            f"sandbox hosts such as 8000-<id>.{config.domain} (it names {', '.join(sorted(names)) or 'no DNS name'})")


def renew(ctx: ssl.SSLContext, config: Config) -> None:
    """A new leaf from the local CA into the serving context (a fresh LocalCA: it caches leaves)."""
    server_context_from_pem(*local_ca(config.home).leaf(*names(config)), ctx=ctx)


def keep_renewed(ctx: ssl.SSLContext, config: Config) -> threading.Event:
    """With local-ca, renew the listener's leaf every RENEW_EVERY seconds, in a daemon thread of
    the serving process (a server may run longer than a leaf lasts); set the event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(RENEW_EVERY):
            try:
                renew(ctx, config)
                log.info("renewed the TLS certificate (local CA)")
            except (OSError, ValueError, ssl.SSLError) as e:  # the old one serves on; said until fixed
                log.error("cannot renew the TLS certificate from the local CA in %s: %s", config.home / CA_DIR, e)

    if config.tls_mode == "local-ca":
        threading.Thread(target=loop, name="sandlot-tls-renew", daemon=True).start()
    return stop


def _given(cert: Path, key: Path) -> ssl.SSLContext:
    cert_pem, key_pem = _read("--tls-cert", cert), _read("--tls-key", key)
    try:
        x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(f"--tls-cert {cert}: no PEM certificate in it") from None
    try:
        serialization.load_pem_private_key(key_pem, None)
    except TypeError:  # it has a passphrase: OpenSSL would ask for it on a terminal there may not be
        raise ConfigError(f"--tls-key {key}: the key is encrypted; a server started unattended needs it without "
                          "a passphrase (e.g. `openssl pkey -in KEY -out PLAIN_KEY`, mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"--tls-key {key}: no PEM private key in it") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        reason = "the key does not belong to the certificate" if "KEY_VALUES_MISMATCH" in str(e) else str(e)
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: {reason}") from None
    return ctx


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{setting} {path}: cannot read it: {e.strerror}") from None


async def ca_pem(request: Request) -> Response:
    """GET /ca.pem: the local CA's certificate, for clients to trust (404 if TLS is not local-ca)."""
    config: Config = request.app.state.config
    if config.tls_mode != "local-ca":
        raise E.NotFound("this server has no local CA: its TLS is "
                         + ("off" if config.tls_mode == "off" else "a certificate given by its operator"))
    return Response(local_ca(config.home).cert_pem, media_type="application/x-pem-file")
