"""E2B's `network.rules` as policy data: per-host headers the egress proxy (egress_proxy.py) sets on
a sandbox's HTTP(S) requests, so that a secret (an Authorization token) reaches the host without
ever entering the sandbox.

Wire shape (E2B's SandboxNetworkConfig.rules): `{host: [{"transform": {"headers": {name: value}}}]}`.
A key is a DNS name, `*.zone` (any depth below zone, not zone itself), or an IPv4 address or CIDR
(every connection to an address inside it, whatever name the request carries). For a request, the
exact name's rules win, else the longest matching wildcard, else the narrowest CIDR holding the
address dialled; rules of different keys are never merged; the rules of one key apply in order (a
later value of a header replaces an earlier one). A key grants no access: the policy must let the
sandbox reach the host.
"""

from __future__ import annotations

import ipaddress
import re

from .._exceptions import InvalidArgument
from .policy import _entry

MAX_HOSTS = 64  # keys of `rules`
MAX_HEADERS = 32  # per host, after merging its rules
MAX_VALUE = 8192  # bytes of one header value
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")  # RFC 9110 field-name
# Headers that frame or route the message: set by a rule they would let one request smuggle another
# past the proxy, or send it elsewhere
_FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
            "keep-alive", "proxy-connection", "expect"}

# (host pattern, ((header, value), ...)) per key, as kept in a NetworkPolicy
HostRules = tuple[str, tuple[tuple[str, str], ...]]


def parse(rules) -> tuple[HostRules, ...]:
    """E2B's `rules` object checked and merged per host; InvalidArgument (400) names what is wrong.
    A value may carry workload identity placeholders (server/identity.py checks their names)."""
    if rules is None:
        return ()
    if not isinstance(rules, dict):
        raise InvalidArgument("network.rules must be an object of host name -> list of rules")
    if len(rules) > MAX_HOSTS:
        raise InvalidArgument(f"network.rules: at most {MAX_HOSTS} hosts")
    out = []
    for key, items in rules.items():
        host = _host(key)
        if not isinstance(items, list):
            raise InvalidArgument(f"network.rules[{key!r}] must be a list of rules")
        headers: dict[str, tuple[str, str]] = {}  # by lower-case name: a later rule replaces
        for item in items:
            for name, value in _headers(key, item).items():
                headers[name.lower()] = (name, value)
        if len(headers) > MAX_HEADERS:
            raise InvalidArgument(f"network.rules[{key!r}]: at most {MAX_HEADERS} headers")
        out.append((host, tuple(headers.values())))
    if len({h for h, _ in out}) != len(out):
        raise InvalidArgument("network.rules names a host twice (keys are compared in lower case)")
    return tuple(out)


def _host(key) -> str:
    """A key as kept: a lower-case name, `*.zone`, an address (`1.2.3.4`) or a CIDR (`1.2.3.0/24`)."""
    if not isinstance(key, str):
        raise InvalidArgument("network.rules: keys must be host names, IPv4 addresses or CIDRs")
    host = _entry(key, "network.rules")
    if isinstance(host, str):
        return host
    return str(host.network_address) if host.prefixlen == 32 else str(host)


def _network(key: str) -> ipaddress.IPv4Network | None:
    """The network of an address key; None for a name."""
    try:
        return ipaddress.IPv4Network(key)
    except ValueError:
        return None


def _headers(key: str, item) -> dict[str, str]:
    if not isinstance(item, dict) or set(item) - {"transform"}:
        raise InvalidArgument(f"network.rules[{key!r}]: a rule is an object with only a `transform`")
    transform = item.get("transform") or {}
    if not isinstance(transform, dict) or set(transform) - {"headers"}:
        raise InvalidArgument(f"network.rules[{key!r}]: a transform has only `headers` here")
    headers = transform.get("headers") or {}
    if not isinstance(headers, dict):
        raise InvalidArgument(f"network.rules[{key!r}]: transform.headers must be an object of strings")
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise InvalidArgument(f"network.rules[{key!r}]: {name!r} is not a header name")
        if name.lower() in _FRAMING or name.lower().startswith("proxy-"):
            raise InvalidArgument(f"network.rules[{key!r}]: the {name} header cannot be set by a rule")
        if not isinstance(value, str) or len(value.encode()) > MAX_VALUE or \
                any(c in value for c in "\r\n\0"):
            raise InvalidArgument(f"network.rules[{key!r}]: the value of {name} must be a string of at "
                                  f"most {MAX_VALUE} bytes without CR, LF or NUL")
    return headers


def headers_for(rules: tuple[HostRules, ...], name: str) -> tuple[tuple[str, str], ...] | None:
    """The headers for a request to `name`: the exact key's, else the longest matching wildcard's;
    None when no name key matches (address keys are headers_for_address's)."""
    name = name.lower().rstrip(".")
    best, best_len = None, -1
    for host, headers in rules:
        if _network(host) is not None:
            continue
        if host == name:
            return headers
        if host.startswith("*.") and name.endswith(host[1:]) and len(host) > best_len:
            best, best_len = headers, len(host)
    return best


def headers_for_address(rules: tuple[HostRules, ...], ip: str) -> tuple[tuple[str, str], ...] | None:
    """The headers for a connection dialled to `ip`: the narrowest address key holding it, or None."""
    address = ipaddress.IPv4Address(ip)
    best, best_len = None, -1
    for host, headers in rules:
        net = _network(host)
        if net is not None and address in net and net.prefixlen > best_len:
            best, best_len = headers, net.prefixlen
    return best


def address_keys(rules: tuple[HostRules, ...]) -> list[ipaddress.IPv4Network]:
    """The networks of the address keys, overlaps merged (what nftables sends to the proxy)."""
    return list(ipaddress.collapse_addresses(n for n in map(_network, (h for h, _ in rules)) if n is not None))


def redacted(rules: tuple[HostRules, ...]) -> dict:
    """The rules as getInfo shows them: E2B's shape, header values hidden (they are secrets)."""
    return {host: [{"transform": {"headers": {n: "<redacted>" for n, _ in headers}}}] for host, headers in rules}


def to_wire(rules: tuple[HostRules, ...]) -> dict:
    """Back into E2B's shape, values included (the server's state database keeps them)."""
    return {host: [{"transform": {"headers": dict(headers)}}] for host, headers in rules}
