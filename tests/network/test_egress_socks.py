"""E2B's `network.egressProxy` (issue 12, "bring your own proxy"): a sandbox's TCP goes only through
the user's SOCKS5 proxy (runtimes/socks.py, dialled by the egress proxy on the host), after its
policy's filtering, and fails closed: with the proxy down or refusing, nothing goes out directly.
The proxy here is socks_server.py in the world's namespace, leaving from its own address (SOCKS),
so the world's log tells which way a request came."""

from __future__ import annotations

import json
import uuid

import pytest
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import ALLOWED, HOST, OTHER, SOCKS, SOCKS_PASSWORD, SOCKS_USER, fetch, network

USER, PASSWORD = SOCKS_USER, SOCKS_PASSWORD


def _connects(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _seen(world, path: str) -> list[dict]:
    return [r for r in world.requests() if r["path"] == path]


def _proxied(address: str = f"{SOCKS}:1080", password: str = PASSWORD, **kwargs) -> dict:
    return network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC],
                   egress_proxy={"address": address, "username": USER, "password": password}, **kwargs)


def test_tcp_goes_through_the_proxy_by_name(world, socks, make_sandbox):
    sbx = make_sandbox(network=_proxied())
    path = f"/socks-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}") == (0, f"world {ALLOWED}\n")
    (seen,) = _seen(world, path)
    assert seen["client"] == SOCKS  # it came out of the proxy, not from the host
    # the name the sandbox resolved goes to the proxy as a name (remote DNS)
    assert {"user": USER, "atyp": "domain", "host": "allowed.test", "port": 80} in _connects(socks)
    info = sbx.get_info()
    assert PASSWORD not in str(info)
    # a sandbox without a proxy still goes out directly (masqueraded as the host)
    direct = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]))
    assert fetch(direct, f"http://allowed.test{path}-direct")[0] == 0
    assert _seen(world, f"{path}-direct")[0]["client"] == HOST


def test_the_policy_still_filters_first(world, socks, make_sandbox):
    sbx = make_sandbox(network=_proxied())
    path = f"/filtered-{uuid.uuid4().hex}"
    before = len(_connects(socks))
    assert fetch(sbx, f"http://other.test{path}")[0] != 0  # not allowed: refused at DNS
    assert fetch(sbx, f"http://{OTHER}{path}")[0] != 0  # a hard-coded address: never reaches the proxy
    assert _seen(world, path) == []
    assert all(c["host"] not in ("other.test", OTHER) for c in _connects(socks)[before:])


@pytest.mark.parametrize("how", ["proxy down", "wrong password"])
def test_it_fails_closed(world, socks, make_sandbox, how):
    net = _proxied(address=f"{SOCKS}:1081") if how == "proxy down" else _proxied(password="wrong")
    sbx = make_sandbox(network=net)
    path = f"/closed-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}")[0] != 0
    assert fetch(sbx, f"https://allowed.test{path}")[0] != 0
    assert _seen(world, path) == []  # never directly either


def test_live_update_sets_and_clears_the_proxy(world, socks, make_sandbox):
    sbx = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]))
    path = f"/update-{uuid.uuid4().hex}"
    sbx.update_network({"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "dns_servers": [world.dns],
                        "egress_proxy": {"address": f"{SOCKS}:1080", "username": USER, "password": PASSWORD}})
    assert fetch(sbx, f"http://allowed.test{path}")[0] == 0
    assert _seen(world, path)[0]["client"] == SOCKS
    sbx.update_network({"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "dns_servers": [world.dns]})
    assert fetch(sbx, f"http://allowed.test{path}-after")[0] == 0
    assert _seen(world, f"{path}-after")[0]["client"] == HOST


@pytest.mark.parametrize("proxy, status, word", [
    ({"address": f"{SOCKS}:1080", "tls": {"enabled": True}}, 501, "tls"),
    ({"address": SOCKS}, 400, "host:port"),
    ({"address": "127.0.0.1:1080"}, 400, "never reach"),
    ({"address": "169.254.169.254:1080"}, 400, "never reach"),
    ({"address": f"{SOCKS}:1080", "password": "x"}, 400, "username"),
    ({"address": f"{SOCKS}:1080", "username": "u" * 256}, 400, "255"),
    ("socks5://x", 400, "object"),
])
def test_bad_proxy_input_is_refused_clearly(api, proxy, status, word):
    body = {"templateID": "base", "network": {"allowOut": ["allowed.test"], "denyOut": [ALL_TRAFFIC],
                                              "egressProxy": proxy}}
    r = api.post("/sandboxes", json=body)
    assert r.status_code == status, r.text
    assert word in r.json()["message"]
