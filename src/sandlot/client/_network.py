"""A sandbox's network as the SDK takes it (`create(network=..., iam=...)`, `update_network()`) and
shows it (`SandboxInfo.network`): E2B's SDK's snake_case keys, turned into the wire's camelCase
(docs/e2b.md §2.13). No I/O here.

Keys are checked on this side, so a typo (`allow_outs`) is an InvalidArgument naming it rather than
a field the server would never see; values are the server's to judge (it answers 400). E2B's
callable selectors and transforms are not taken: write the list, or the placeholder
`${e2b.identity.tokens.<name>}` in a header, yourself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .. import _exceptions as E

# snake_case (E2B's SDK) -> the wire's name; the update takes the egress part only
CREATE_KEYS = {"allow_out": "allowOut", "deny_out": "denyOut", "dns_servers": "dnsServers",
               "allow_public_traffic": "allowPublicTraffic", "mask_request_host": "maskRequestHost",
               "https_ports": "httpsPorts", "rules": "rules", "egress_proxy": "egressProxy",
               "bandwidth_mbps": "bandwidthMbps"}
UPDATE_KEYS = {k: CREATE_KEYS[k] for k in ("allow_out", "deny_out", "dns_servers", "rules", "egress_proxy",
                                           "bandwidth_mbps")}
LISTS = {"allow_out": str, "deny_out": str, "dns_servers": str, "https_ports": int}
PROXY_KEYS = {"address", "username", "password", "tls"}
TLS_KEYS = {"enabled": "enabled", "server_name": "serverName", "ca_cert": "caCert"}
SHOWN = {wire: key for key, wire in CREATE_KEYS.items()}  # getInfo's names -> ours


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def _unknown(what: str, key: object, known: Mapping[str, Any] | set[str]) -> E.InvalidArgument:
    hint = f" (did you mean {_snake(key)!r}?)" if isinstance(key, str) and _snake(key) in known else ""
    return E.InvalidArgument(f"unknown {what} key {key!r}{hint}; known: {', '.join(sorted(known))}")


def _mapping(value: object, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise E.InvalidArgument(f"{what} must be a dict, got {type(value).__name__}")
    return value


def _value(key: str, value: Any) -> Any:
    if callable(value):
        raise E.InvalidArgument(f"network {key} must be written out: callables are not supported")
    if key in LISTS:
        kind = LISTS[key]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not all(
                isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise E.InvalidArgument(f"network {key} must be a list of {kind.__name__}, got {value!r}")
        return list(value)
    if key == "rules":
        return _rules(value)
    if key == "egress_proxy":
        return _proxy(value)
    return value  # booleans, strings and numbers: the server checks them


def _rules(rules: object) -> dict[str, Any]:
    """E2B's `{host: [{"transform": {"headers": {...}}}]}`, the same on the wire."""
    out = {}
    for host, entries in _mapping(rules, "network rules").items():
        if not isinstance(entries, (list, tuple)):
            raise E.InvalidArgument(f"network rules[{host!r}] must be a list of rules")
        for rule in entries:
            transform = rule.get("transform") if isinstance(rule, Mapping) else None
            if callable(transform):
                raise E.InvalidArgument(f"network rules[{host!r}]: a callable transform is not supported; "
                                        "write ${e2b.identity.tokens.<name>} in the header yourself")
        out[host] = [dict(rule) if isinstance(rule, Mapping) else rule for rule in entries]
    return out


def _proxy(proxy: object) -> dict[str, Any]:
    config = _mapping(proxy, "network egress_proxy")
    for key in config:
        if key not in PROXY_KEYS:
            raise _unknown("network egress_proxy", key, PROXY_KEYS)
    out = {k: v for k, v in config.items() if k != "tls" and v is not None}
    tls = config.get("tls")
    if tls is True:
        out["tls"] = {"enabled": True}
    elif isinstance(tls, Mapping):
        for key in tls:
            if key not in TLS_KEYS:
                raise _unknown("network egress_proxy tls", key, TLS_KEYS)
        out["tls"] = {"enabled": True, **{TLS_KEYS[k]: v for k, v in tls.items() if v is not None}}
    elif tls not in (None, False):
        raise E.InvalidArgument(f"network egress_proxy tls must be a bool or a dict, got {tls!r}")
    return out


def _convert(network: Mapping[str, Any], keys: Mapping[str, str], what: str) -> dict[str, Any]:
    out = {}
    for key, value in _mapping(network, what).items():
        if key not in keys:
            raise _unknown(what, key, keys)
        if value is not None:
            out[keys[key]] = _value(key, value)
    return out


def create_fields(allow_internet_access: bool | None, network: Mapping[str, Any] | None,
                  iam: Mapping[str, Any] | None) -> dict[str, Any]:
    """The create body's `allow_internet_access`, `network` and `iam`; none of them asked: nothing,
    and the sandbox has no network (sandlot's default)."""
    body: dict[str, Any] = {}
    if allow_internet_access is not None:
        body["allow_internet_access"] = allow_internet_access
    if network is not None:
        body["network"] = _convert(network, CREATE_KEYS, "network")
    if iam is not None:
        body.update(_iam(iam))
    return body


def update_body(network: Mapping[str, Any], allow_internet_access: bool | None) -> dict[str, Any]:
    """PUT /sandboxes/{id}/network's body. E2B's SDK takes `allow_internet_access` inside `network`;
    the argument is the same thing."""
    network = dict(_mapping(network, "network"))
    inside = network.pop("allow_internet_access", None)
    if inside is not None and allow_internet_access is not None and inside != allow_internet_access:
        raise E.InvalidArgument("allow_internet_access given twice, with different values")
    body = _convert(network, UPDATE_KEYS, "network update")
    flag = allow_internet_access if allow_internet_access is not None else inside
    if flag is not None:
        body["allow_internet_access"] = flag
    return body


def _iam(iam: Mapping[str, Any]) -> dict[str, Any]:
    """E2B's `{"tokens": {name: {"audience", "token_type"}}}` -> the wire's tokenType."""
    for key in _mapping(iam, "iam"):
        if key != "tokens":
            raise _unknown("iam", key, {"tokens"})
    tokens = {}
    for name, token in _mapping(iam.get("tokens") or {}, "iam tokens").items():
        token = _mapping(token, f"iam token {name!r}")
        for key in token:
            if key not in ("audience", "token_type"):
                raise _unknown(f"iam token {name!r}", key, {"audience", "token_type"})
        tokens[name] = {"audience": token.get("audience"), "tokenType": token.get("token_type", "JWT-SVID")}
    return {"iam": {"tokens": tokens}} if tokens else {}  # no tokens: no workload identity, as E2B's SDK


def shown(network: Mapping[str, Any] | None) -> dict[str, Any]:
    """getInfo's `network` in the keys `create(network=...)` takes (rule header values are
    `<redacted>`, the proxy's password absent)."""
    out = {}
    for wire, value in (network or {}).items():
        key = SHOWN.get(wire, _snake(wire))
        if key == "egress_proxy" and isinstance(value, Mapping):
            value = dict(value)
            if isinstance(value.get("tls"), Mapping):
                value["tls"] = {_snake(k): v for k, v in value["tls"].items()}
        out[key] = value
    return out
