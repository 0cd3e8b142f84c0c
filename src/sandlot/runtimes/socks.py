"""A user's SOCKS5 proxy for a sandbox's egress (E2B's `network.egressProxy`, "bring your own
proxy"): parsed from the API here, dialled by the egress proxy (egress_proxy.py) with python-socks.

A sandbox with one has all its TCP redirected to the egress proxy (network.py, the `socks` set),
which checks the sandbox's policy for the destination and then connects through the user's proxy
only: if that proxy is unreachable or refuses, the sandbox's connection fails; nothing goes out
directly. Names the sandbox resolved for an allowed host go to the proxy as names (remote DNS,
ATYP=domain); other destinations as addresses. UDP (DNS, QUIC) is not tunnelled, as at E2B.

With `tls`, the hop to the proxy is TLS (1.2 or newer; socks_tls.py), the SOCKS5 handshake, the
credentials and the tunnelled bytes inside it: the proxy's certificate is always verified, for
`serverName` (the address's host by default; the connection goes to the address resolved and
checked here), against `caCert` alone when given (E2B: it replaces the system trust store), else
the system's; the server's SANDLOT_EGRESS_CA_FILE is for header rules' upstream hosts, not for this
hop. A failed handshake fails the sandbox's connection: never plaintext.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl

from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

from .._exceptions import InvalidArgument
from .policy import _entry, closed
from .socks_tls import Hop, context

# (host, port, username, password, tls) as a NetworkPolicy keeps it; tls is None (plaintext) or
# (serverName or None for the host, caCert PEM or None for the system's trust store)
Socks = tuple[str, int, "str | None", "str | None", "tuple[str | None, str | None] | None"]
MAX_CA_BYTES = 8192  # E2B's limit on caCert


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
            context(ca)
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
    hop = None if not tls else Hop(ip, proxy_port, tls[0] or proxy_host, tls[1])
    proxy = Proxy(ProxyType.SOCKS5, ip, proxy_port, user, password, rdns=True, forward=hop)
    return await proxy.connect(host, port, timeout=timeout)

