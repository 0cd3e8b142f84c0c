"""A user's SOCKS5 proxy for a sandbox's egress (E2B's `network.egressProxy`, "bring your own
proxy"): parsed from the API here, dialled by the egress proxy (egress_proxy.py) with python-socks.

A sandbox with one has all its TCP redirected to the egress proxy (network.py, the `socks` set),
which checks the sandbox's policy for the destination and then connects through the user's proxy
only: if that proxy is unreachable or refuses, the sandbox's connection fails; nothing goes out
directly. Names the sandbox resolved for an allowed host go to the proxy as names (remote DNS,
ATYP=domain); other destinations as addresses. UDP (DNS, QUIC) is not tunnelled, as at E2B.
"""

from __future__ import annotations

import asyncio
import socket

from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

from .._exceptions import InvalidArgument, Unsupported
from .policy import _entry, closed

# (host, port, username, password) as a NetworkPolicy keeps it
Socks = tuple[str, int, "str | None", "str | None"]


def parse(config) -> Socks | None:
    """E2B's SandboxEgressProxyConfig: {address: "host:port", username?, password?, tls?}."""
    if config is None:
        return None
    if not isinstance(config, dict) or set(config) - {"address", "username", "password", "tls"}:
        raise InvalidArgument("network.egressProxy is an object with address, username, password, tls")
    tls = config.get("tls")
    if tls not in (None, False) and not (isinstance(tls, dict) and tls.get("enabled") is False):
        raise Unsupported("network.egressProxy.tls (TLS to the SOCKS5 proxy) is not supported on this server")
    address = config.get("address")
    if not isinstance(address, str):
        raise InvalidArgument("network.egressProxy.address must be \"host:port\"")
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"network.egressProxy.address {address!r} is not host:port")
    entry = _entry(host, "network.egressProxy.address")
    if not isinstance(entry, str) and entry.prefixlen != 32 or isinstance(entry, str) and entry.startswith("*."):
        raise InvalidArgument(f"network.egressProxy.address {address!r} names no single host")
    host = entry if isinstance(entry, str) else str(entry.network_address)
    if not isinstance(entry, str) and closed(host):  # a name is checked where it resolves, at each dial
        raise InvalidArgument(f"network.egressProxy.address {address!r} is in a range sandboxes never reach")
    user, password = config.get("username"), config.get("password")
    for what, value in (("username", user), ("password", password)):
        if value is not None and (not isinstance(value, str) or not 1 <= len(value.encode()) <= 255):
            raise InvalidArgument(f"network.egressProxy.{what} must be a string of 1 to 255 bytes")
    if password is not None and user is None:
        raise InvalidArgument("network.egressProxy.password needs a username")
    return host, int(port), user, password


def shown(socks: Socks) -> dict:
    """As getInfo shows it: never the password."""
    host, port, user, _ = socks
    return {"address": f"{host}:{port}", **({"username": user} if user else {})}


async def dial(socks: Socks, host: str, port: int, closed, timeout: float) -> socket.socket:
    """A socket to host:port through the user's proxy. `closed(ip)`: whether the proxy's own
    address is one the host must not be made to reach (its loopback, metadata, a sandbox): those
    are refused, as they would be to the sandbox."""
    proxy_host, proxy_port, user, password = socks
    loop = asyncio.get_running_loop()
    found = await asyncio.wait_for(loop.getaddrinfo(proxy_host, proxy_port, family=socket.AF_INET,
                                                    type=socket.SOCK_STREAM), timeout)
    ip = found[0][4][0]
    if closed(ip):
        raise ConnectionRefusedError(f"the SOCKS5 proxy {proxy_host} is at {ip}, a closed address")
    proxy = Proxy(ProxyType.SOCKS5, ip, proxy_port, user, password, rdns=True)
    return await proxy.connect(host, port, timeout=timeout)
