"""A sandbox's network in E2B's API shape (issue 12): the `network` fields of create, the live
update (PUT /sandboxes/{id}/network) and how getInfo reports them. The policy itself is
runtimes/policy.py's NetworkPolicy; the service side is sandbox_networks.py."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..runtimes import egress_rules, socks
from ..runtimes.policy import NetworkPolicy
from .bodies import JsonBody, read_model
from .request_info import note
from .store import SandboxRecord


class NetworkIn(JsonBody):
    """E2B's `network` (SandboxNetworkConfig); `bandwidthMbps` is sandlot's own."""

    allowOut: list[str] | None = None
    denyOut: list[str] | None = None
    dnsServers: list[str] | None = None
    allowPublicTraffic: bool | None = None
    maskRequestHost: str | None = None
    httpsPorts: list[int] | None = None
    rules: Any = None  # checked by egress_rules.parse: its errors name the field
    egressProxy: Any = None  # checked by socks.parse
    bandwidthMbps: float | None = None


class NetworkUpdateIn(JsonBody):
    """E2B's SandboxNetworkUpdateConfig: replaces the egress configuration; omitted is cleared."""

    allowOut: list[str] | None = None
    denyOut: list[str] | None = None
    dnsServers: list[str] | None = None
    rules: Any = None
    egressProxy: Any = None
    allow_internet_access: bool | None = None
    bandwidthMbps: float | None = None


def egress_from(allow_internet_access: bool | None, net: NetworkIn | NetworkUpdateIn | None) -> NetworkPolicy | None:
    return NetworkPolicy.from_e2b(allow_internet_access, net and net.allowOut, net and net.denyOut,
                                  net and net.dnsServers, net and net.bandwidthMbps,
                                  egress_rules.parse(net and net.rules), socks.parse(net and net.egressProxy))


def ingress_from(net: NetworkIn | None) -> dict:
    if net is None:
        return {}
    return {k: v for k, v in (("allowPublicTraffic", net.allowPublicTraffic),
                              ("maskRequestHost", net.maskRequestHost),
                              ("httpsPorts", net.httpsPorts)) if v is not None}


def network_json(rec: SandboxRecord) -> dict:
    """E2B's SandboxNetworkConfig as getInfo shows it."""
    net = rec.network or {}
    egress = net.get("egress")
    out = dict(net.get("ingress") or {})
    if egress:
        out.update(allowOut=egress["allow"], denyOut=egress["deny"])
        if egress.get("dns_servers") is not None:
            out["dnsServers"] = egress["dns_servers"]
        if egress.get("rules"):  # the header values are secrets: never shown
            out["rules"] = egress_rules.redacted(NetworkPolicy.from_json(egress).rules)
        if egress.get("socks"):  # nor the proxy's password
            out["egressProxy"] = socks.shown(tuple(egress["socks"]))
    return out


async def update_network(request: Request) -> Response:
    body = await read_model(request, NetworkUpdateIn)
    egress = egress_from(body.allow_internet_access, body)
    note(network=egress.describe() if egress is not None else "none")  # the audit row
    await request.app.state.service.networks.update(request.path_params["sandbox_id"], egress)
    return Response(status_code=204)


def routes() -> list[Route]:
    return [Route("/sandboxes/{sandbox_id}/network", update_network, methods=["PUT"])]
