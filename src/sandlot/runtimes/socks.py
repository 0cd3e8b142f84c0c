"""A user's SOCKS5 proxy for a sandbox's egress (E2B's `network.egressProxy`, "bring your own
proxy"): parsed from the API here, dialled by the egress proxy (egress_proxy.py) with python-socks.

A sandbox with one has all its TCP redirected to the egress proxy (network.py, the `socks` set),
which checks the sandbox's policy for the destination and then connects through the user's proxy
only: if that proxy is unreachable or refuses, the sandbox's connection fails; nothing goes out
directly. Names the sandbox resolved for an allowed host go to the proxy as names (remote DNS,
ATYP=domain); other destinations as addresses. UDP (DNS, QUIC) is not tunnelled, as at E2B.

With `tls`, the hop to the proxy is TLS (1.2 or newer), the SOCKS5 handshake, the credentials and
the tunnelled bytes inside it: the proxy's certificate is always verified, for `serverName` (the
address's host by default), against `caCert` alone when given (E2B: it replaces the system trust
store), else the system's trust store; the server's SANDLOT_EGRESS_CA_FILE is for the upstream
hosts of header rules, not for this hop. A failed handshake fails the connection: never plaintext.
The egress proxy wants a plain socket (it peeks at it, wraps it in TLS for header rules), so a TLS
hop is a socket pair: one end is the egress proxy's, the other is relayed to the TLS connection by
a task on the egress proxy's loop that ends when that end is closed. TLS has no half-close: a
sandbox that ends its sending keeps the hop open until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl

from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

from .._exceptions import InvalidArgument
from .policy import _entry, closed

# (host, port, username, password, tls) as a NetworkPolicy keeps it; tls is None (plaintext) or
# (serverName or None for the host, caCert PEM or None for the system's trust store)
Socks = tuple[str, int, "str | None", "str | None", "tuple[str | None, str | None] | None"]
MAX_CA_BYTES = 8192  # E2B's limit on caCert
CHUNK = 64 * 1024


def parse(config) -> Socks | None:
    """E2B's SandboxEgressProxyConfig: {address: "host:port", username?, password?, tls?}."""
    if config is None:
        return None
    if not isinstance(config, dict) or set(config) - {"address", "username", "password", "tls"}:
        raise InvalidArgument("network.egressProxy is an object with address, username, password, tls")
    address = config.get("address")
    if not isinstance(address, str):
        raise InvalidArgument("network.egressProxy.address must be \"host:port\"")
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"network.egressProxy.address {address!r} is not host:port")
    host = _one_host(host, "network.egressProxy.address", address)
    if _is_address(host) and closed(host):  # a name is checked where it resolves, at each dial
        raise InvalidArgument(f"network.egressProxy.address {address!r} is in a range sandboxes never reach")
    user, password = config.get("username"), config.get("password")
    for what, value in (("username", user), ("password", password)):
        if value is not None and (not isinstance(value, str) or not 1 <= len(value.encode()) <= 255):
            raise InvalidArgument(f"network.egressProxy.{what} must be a string of 1 to 255 bytes")
    if password is not None and user is None:
        raise InvalidArgument("network.egressProxy.password needs a username")
    return host, int(port), user, password, _tls(config.get("tls"))


def _one_host(value, what: str, shown=None) -> str:
    """A host name or an IPv4 address, not a wildcard nor a range."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a host name or an IPv4 address")
    entry = _entry(value, what)
    if not isinstance(entry, str) and entry.prefixlen != 32 or isinstance(entry, str) and entry.startswith("*."):
        raise InvalidArgument(f"{what} {shown or value!r} names no single host")
    return entry if isinstance(entry, str) else str(entry.network_address)


def _is_address(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


def _tls(tls) -> tuple[str | None, str | None] | None:
    """E2B's SandboxEgressProxyTLSConfig ({enabled, serverName?, caCert?}), or a bare bool."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return None, None
    if not isinstance(tls, dict) or set(tls) - {"enabled", "serverName", "caCert"} \
            or not isinstance(tls.get("enabled"), bool):
        raise InvalidArgument("network.egressProxy.tls is an object with enabled (a bool), serverName, caCert")
    if not tls["enabled"]:
        if len(tls) > 1:
            raise InvalidArgument("network.egressProxy.tls: with enabled false, no other field may be set")
        return None
    name, ca = tls.get("serverName"), tls.get("caCert")
    if name is not None:
        name = _one_host(name, "network.egressProxy.tls.serverName")
    if ca is not None:
        if not isinstance(ca, str) or not ca.strip() or len(ca.encode()) > MAX_CA_BYTES:
            raise InvalidArgument(f"network.egressProxy.tls.caCert must be PEM certificates of at most "
                                  f"{MAX_CA_BYTES} bytes")
        if "PRIVATE KEY" in ca:  # it is kept in the state db and never meant to be a secret
            raise InvalidArgument("network.egressProxy.tls.caCert holds a private key: give only certificates")
        try:
            _context(ca)
        except ssl.SSLError as e:
            raise InvalidArgument(f"network.egressProxy.tls.caCert is not PEM certificates: "
                                  f"{str(e).split(' (_ssl')[0]}") from None
    return name, ca


def shown(socks) -> dict:
    """As getInfo shows it: never the password nor the CA."""
    host, port, user, _, tls = (*socks, None)[:5]  # a policy stored before tls has four
    out = {"address": f"{host}:{port}", **({"username": user} if user else {})}
    if tls:
        out["tls"] = {"enabled": True, **({"serverName": tls[0]} if tls[0] else {})}
    return out


@functools.lru_cache(maxsize=32)
def _context(ca_pem: str | None) -> ssl.SSLContext:
    """Verifies the proxy: host name checked, TLS 1.2 at least; `ca_pem` alone when given, else
    the system's trust store (loading that takes milliseconds: kept)."""
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def dial(socks, host: str, port: int, closed, timeout: float) -> socket.socket:
    """A socket to host:port through the user's proxy. `closed(ip)`: whether the proxy's own
    address is one the host must not be made to reach (its loopback, metadata, a sandbox): those
    are refused, as they would be to the sandbox."""
    proxy_host, proxy_port, user, password, tls = (*socks, None)[:5]
    loop = asyncio.get_running_loop()
    found = await asyncio.wait_for(loop.getaddrinfo(proxy_host, proxy_port, family=socket.AF_INET,
                                                    type=socket.SOCK_STREAM), timeout)
    ip = found[0][4][0]
    if closed(ip):
        raise ConnectionRefusedError(f"the SOCKS5 proxy {proxy_host} is at {ip}, a closed address")
    hop = None if not tls else _TlsHop(ip, proxy_port, tls[0] or proxy_host, tls[1])
    proxy = Proxy(ProxyType.SOCKS5, ip, proxy_port, user, password, rdns=True, forward=hop)
    return await proxy.connect(host, port, timeout=timeout)


class _TlsHop:
    """python-socks' `forward` (the connection to the proxy, made by another): TLS to the proxy's
    pinned address, verified for `server_name`; the SOCKS5 handshake then runs over its socket."""

    def __init__(self, ip: str, port: int, server_name: str, ca_pem: str | None):
        self.ip, self.port, self.server_name, self.ca_pem = ip, port, server_name, ca_pem

    async def connect(self, **_) -> socket.socket:
        reader, writer = await asyncio.open_connection(self.ip, self.port, ssl=_context(self.ca_pem),
                                                       server_hostname=self.server_name)
        # from here on nothing awaits: the pair and the relay exist together, or not at all
        ours, theirs = socket.socketpair()
        hop = _HopSocket(ours.family, ours.type, fileno=ours.detach())
        hop.setblocking(False)
        theirs.setblocking(False)
        hop.relay = asyncio.get_running_loop().create_task(_relay(theirs, reader, writer))
        return hop


class _HopSocket(socket.socket):
    """The egress proxy's end of a TLS hop: closing it (the egress proxy does, or a transport it
    was handed to) ends the relay, which closes the other end and the TLS connection."""

    relay: asyncio.Task | None = None

    def close(self) -> None:
        super().close()
        if self.relay is not None and not self.relay.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.relay.cancel()


async def _relay(sock: socket.socket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes between the pair's other end and the TLS connection, until both ways ended or one
    failed (the pair's first end closed, the TLS connection broken)."""
    loop = asyncio.get_running_loop()

    async def down() -> None:
        while data := await reader.read(CHUNK):
            await loop.sock_sendall(sock, data)
        sock.shutdown(socket.SHUT_WR)

    async def up() -> None:
        while data := await loop.sock_recv(sock, CHUNK):
            writer.write(data)
            await writer.drain()

    ways = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(ways, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        try:
            for way in ways:
                way.cancel()
            # both ended before the socket closes: a pending sock_recv keeps its fd in the selector
            await asyncio.gather(*ways, return_exceptions=True)
        finally:
            sock.close()
            writer.close()
