"""server/tls.py without a server: what the local CA's leaf names, and its renewal in place (a
serving context presents the new leaf to the next handshake), shown with real TLS handshakes."""

from __future__ import annotations

import socket
import ssl
import threading

from cryptography import x509

from sandlot.server import tls
from sandlot.server.config import Config
from support import wait_until


def _served(ctx: ssl.SSLContext, trust: ssl.SSLContext, name: str) -> x509.Certificate:
    """The certificate `ctx` presents to a client verifying `name` against `trust`."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]

        def serve() -> None:
            conn, _ = listening.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as server_side:
                    server_side.recv(1)
            except (OSError, ssl.SSLError):
                pass

        t = threading.Thread(target=serve)
        t.start()
        with socket.create_connection(("127.0.0.1", port)) as raw, trust.wrap_socket(raw, server_hostname=name) as c:
            assert c.selected_alpn_protocol() in (None, "http/1.1")
            der = c.getpeercert(binary_form=True)
        t.join(5)
    return x509.load_der_x509_certificate(der)


def test_the_leaf_names_the_domain_its_hosts_and_loopback(tmp_path):
    config = Config(home=tmp_path, tls="local-ca", domain="sandlot.localhost:3000", host="10.1.2.3")
    assert tls.names(config) == ("sandlot.localhost", "*.sandlot.localhost", "localhost", "127.0.0.1", "::1",
                                 "10.1.2.3")
    assert "0.0.0.0" not in tls.names(Config(home=tmp_path, tls="local-ca", domain="a.localhost", host="0.0.0.0"))


def test_a_serving_context_is_renewed_in_place(tmp_path):
    config = Config(home=tmp_path, tls="local-ca", domain="sandlot.localhost:3000")
    ctx = tls.server_context(config)
    trust = ssl.create_default_context(cafile=str(tls.local_ca(tmp_path).cert_path))
    trust.set_alpn_protocols(["h2", "http/1.1"])  # as the e2b SDK's transport asks
    first = _served(ctx, trust, "8000-abc.sandlot.localhost")
    tls.renew(ctx, config)
    second = _served(ctx, trust, "8000-abc.sandlot.localhost")
    assert first.serial_number != second.serial_number  # a new leaf, from the same CA (verified)
    assert second.not_valid_after_utc >= first.not_valid_after_utc
    tls.keep_renewed(ctx, Config(home=tmp_path))  # tls off: nothing to renew
    assert not [t for t in threading.enumerate() if t.name == "sandlot-tls-renew"]


def test_the_listener_keeps_its_leaf_renewed(tmp_path, monkeypatch):
    config = Config(home=tmp_path, tls="local-ca", domain="sandlot.localhost:3000")
    ctx = tls.server_context(config)
    trust = ssl.create_default_context(cafile=str(tls.local_ca(tmp_path).cert_path))
    first = _served(ctx, trust, "sandlot.localhost")
    monkeypatch.setattr(tls, "RENEW_EVERY", 0.05)
    stop = tls.keep_renewed(ctx, config)
    try:
        [renewer] = [t for t in threading.enumerate() if t.name == "sandlot-tls-renew"]
        assert renewer.daemon
        # renewed within a few rounds of 0.05 s when idle; under load a round (a new key and leaf) may
        # take seconds, so waited for: a renewer that never renews still fails here
        wait_until(lambda: _served(ctx, trust, "sandlot.localhost").serial_number != first.serial_number,
                   timeout=20, interval=0.1, message="a renewed leaf to be served")
    finally:
        stop.set()
        renewer.join(5)
    assert not renewer.is_alive()
