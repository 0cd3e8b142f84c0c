"""server/certs.py: the server's local CA and the leaves it signs, checked by real TLS handshakes
(Python's ssl client verifying as any client would)."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import pytest

from sandlot.server import certs
from sandlot.server.certs import LocalCA


def _handshake(ca: LocalCA, served: tuple[str, ...], asked: str, trusted: LocalCA | None = None) -> str:
    """Serve a leaf for `served` on loopback; connect as host `asked`, verifying against `trusted`'s
    certificate (the serving CA's by default)."""
    server_ctx = ca.server_context(*served)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve():
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError):
                conn.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client = ssl.create_default_context(cafile=str((trusted or ca).cert_path))
        try:
            with socket.create_connection(listener.getsockname()) as raw, \
                    client.wrap_socket(raw, server_hostname=asked) as tls:
                return tls.recv(5).decode()
        finally:
            t.join(5)


def test_leaves_verify_for_their_names_only(tmp_path):
    ca = LocalCA(tmp_path / "ca")
    assert _handshake(ca, ("api.example.test",), "api.example.test") == "hello"
    assert _handshake(ca, ("*.sandlot.localhost",), "8000-abc.sandlot.localhost") == "hello"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ca, ("api.example.test",), "other.example.test")
    assert ca.leaf("api.example.test") is ca.leaf("API.example.test")  # cached, names are case-free


def test_the_ca_is_kept_private_and_reused(tmp_path):
    ca = LocalCA(tmp_path / "ca")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    again = LocalCA(tmp_path / "ca")
    assert again.cert_pem == ca.cert_pem
    # a leaf from the reloaded CA verifies against the first one's certificate
    assert _handshake(again, ("x.test",), "x.test") == "hello"
    with pytest.raises(ssl.SSLCertVerificationError):  # and not against another CA
        _handshake(again, ("x.test",), "x.test", trusted=LocalCA(tmp_path / "other"))


def test_the_cache_of_leaves_is_bounded(tmp_path, monkeypatch):
    """A sandbox picks the SNI it sends to an address rule's host, and a host with a wildcard
    certificate verifies any name under it: the leaves (and contexts) kept are bounded, the least
    recently used going first, and one made again still verifies."""
    monkeypatch.setattr(certs, "CACHED", 4)
    ca = LocalCA(tmp_path / "ca")
    first = ca.server_context("n0.example.test")
    for i in range(1, 10):
        ca.server_context(f"n{i}.example.test")
        ca.server_context("n0.example.test")  # used again: kept
    assert len(ca._leaves) <= 4 and len(ca._contexts) <= 4
    assert ca.server_context("n0.example.test") is first
    assert _handshake(ca, ("n1.example.test",), "n1.example.test") == "hello"  # evicted, made again
