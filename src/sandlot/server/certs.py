"""A certificate authority local to one sandlot server, and the leaf certificates it signs.

Two users: the port proxy's TLS when no certificate is given (`*.{domain}` names, issue 12), and the
egress proxy that rewrites requests to hosts named in `network.rules` (it must present a certificate
for the host a sandbox asked for, which sandboxes trust because this CA is in their trust store).
The CA's key never leaves the host: it is kept under the server's home, readable by root only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CA_DAYS = 3650
_LEAF_DAYS = 90  # leaves are made again at start and on demand: short lived costs nothing
# leaves (and contexts) kept, the least recently used going first: the egress proxy asks for one
# per name a sandbox sends as SNI to an address rule's host, so a host with a wildcard
# certificate would let a sandbox fill the server's memory with them
CACHED = 1024


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sandlot"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common[:64])])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


class LocalCA:
    """The CA in `directory` (ca.pem, ca.key), made on first use; leaves for names, cached in memory."""

    def __init__(self, directory: Path, label: str = "sandlot local CA") -> None:
        self.directory = Path(directory)
        self.label = label
        self._lock = threading.Lock()
        self._leaves: OrderedDict[tuple[str, ...], tuple[bytes, bytes]] = OrderedDict()
        self._contexts: OrderedDict[tuple[tuple[str, ...], tuple[str, ...]], ssl.SSLContext] = OrderedDict()
        self._cert, self._key = self._load_or_make()

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate (PEM): what clients and sandboxes add to their trust store."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.pem"

    def _load_or_make(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert_file, key_file = self.directory / "ca.pem", self.directory / "ca.key"
        if cert_file.exists() and key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            return x509.load_pem_x509_certificate(cert_file.read_bytes()), key  # type: ignore[return-value]
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(self.label)).issuer_name(_name(self.label))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(key_file, _pem_key(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def leaf(self, *names: str) -> tuple[bytes, bytes]:
        """(certificate chain PEM, key PEM) for these DNS names or IP addresses (`*.x` wildcards too)."""
        if not names:
            raise ValueError("a certificate needs at least one name")
        names = tuple(n.lower() for n in names)
        with self._lock:
            if (found := _used(self._leaves, names)) is not None:
                return found
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(self._cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
                .add_extension(_san(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        made = (cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem, _pem_key(key))
        with self._lock:
            return _kept(self._leaves, names, made)

    def server_context(self, *names: str, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A server-side SSLContext presenting a leaf for these names (cached), offering the `alpn`
        protocols (none by default: the client then speaks HTTP/1.1)."""
        names = tuple(n.lower() for n in names)
        with self._lock:
            if (found := _used(self._contexts, (names, alpn))) is not None:
                return found
        chain, key = self.leaf(*names)
        ctx = server_context_from_pem(chain, key)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        with self._lock:
            return _kept(self._contexts, (names, alpn), ctx)


def _used(cache: OrderedDict, key):
    """The cached value, now the most recently used; None if there is none."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    return None


def _kept(cache: OrderedDict, key, value):
    """`value` cached (or the one another thread cached first), the oldest going past CACHED."""
    value = cache.setdefault(key, value)
    while len(cache) > CACHED:
        cache.popitem(last=False)
    return value


def server_context_from_pem(chain: bytes, key: bytes, ctx: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """ssl can load a certificate only from files: written to a private temporary directory and removed.
    Into `ctx` if given (a serving context renewed in place: new handshakes present the new one)."""
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="sandlot-cert-") as d:
        cert_file, key_file = Path(d) / "cert.pem", Path(d) / "key.pem"
        cert_file.write_bytes(chain)
        _write_private(key_file, key)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
