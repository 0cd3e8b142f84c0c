"""E2B's `network.egressProxy` (issue 12, "bring your own proxy"): a sandbox's TCP goes only through
the user's SOCKS5 proxy (runtimes/socks.py, dialled by the egress proxy on the host), after its
policy's filtering, and fails closed: with the proxy down or refusing, nothing goes out directly.
The proxy here is socks_server.py in the world's namespace, leaving from its own address (SOCKS),
so the world's log tells which way a request came."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import (ALLOWED, HOST, OTHER, SOCKS, SOCKS_NAME, SOCKS_PASSWORD, SOCKS_TLS_PORT, SOCKS_USER,
                             fetch, make_ca, network, pem, sh)

USER, PASSWORD = SOCKS_USER, SOCKS_PASSWORD


def _connects(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _seen(world, path: str) -> list[dict]:
    return [r for r in world.requests() if r["path"] == path]


def _proxied(address: str = f"{SOCKS}:1080", password: str = PASSWORD, tls=None, **kwargs) -> dict:
    proxy = {"address": address, "username": USER, "password": password, **({} if tls is None else {"tls": tls})}
    return network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC], egress_proxy=proxy, **kwargs)


def test_tcp_goes_through_the_proxy_by_name(world, socks, make_sandbox):
    sbx = make_sandbox(network=_proxied())
    path = f"/socks-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}") == (0, f"world {ALLOWED}\n")
    (seen,) = _seen(world, path)
    assert seen["client"] == SOCKS  # it came out of the proxy, not from the host
    # the name the sandbox resolved goes to the proxy as a name (remote DNS)
    assert {"user": USER, "atyp": "domain", "host": "allowed.test", "port": 80, "tls": False} in _connects(socks)
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
    ({"address": f"{SOCKS}:1080", "tls": {"enabled": True, "caCert": "not a certificate"}}, 400, "caCert"),
    ({"address": f"{SOCKS}:1080", "tls": {"enabled": True, "caCert": "x" * 9000}}, 400, "8192"),
    ({"address": f"{SOCKS}:1080", "tls": {"enabled": True, "serverName": "*.socks.test"}}, 400, "serverName"),
    ({"address": f"{SOCKS}:1080", "tls": {"enabled": True, "serverName": "a b"}}, 400, "serverName"),
    ({"address": f"{SOCKS}:1080", "tls": {"enabled": False, "serverName": "x.test"}}, 400, "enabled"),
    ({"address": f"{SOCKS}:1080", "tls": {"serverName": "x.test"}}, 400, "enabled"),
    ({"address": f"{SOCKS}:1080", "tls": "yes"}, 400, "tls"),
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


# ---- TLS to the proxy (egressProxy.tls) ----------------------------------------------------------

TLS_ADDRESS = f"{SOCKS}:{SOCKS_TLS_PORT}"


def _tls(socks_ca, **kwargs) -> dict:
    """The SDK's tls option (snake_case; it sends {enabled: true, serverName?, caCert?})."""
    return {"ca_cert": pem(socks_ca[0]), **kwargs}


@pytest.mark.parametrize("server_name", [SOCKS_NAME, None])  # None: verified for the address's host
def test_tls_to_the_proxy_carries_the_traffic(world, socks, socks_ca, make_sandbox, api, server_name):
    tls = _tls(socks_ca, **({"server_name": server_name} if server_name else {}))
    sbx = make_sandbox(network=_proxied(address=TLS_ADDRESS, tls=tls))
    path = f"/socks-tls-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}") == (0, f"world {ALLOWED}\n")
    assert fetch(sbx, f"https://allowed.test{path}-https")[0] == 0
    assert _seen(world, path)[0]["client"] == SOCKS and _seen(world, f"{path}-https")[0]["client"] == SOCKS
    assert {"user": USER, "atyp": "domain", "host": "allowed.test", "port": 80, "tls": True} in _connects(socks)
    # getInfo: the address, the user and tls with its server name; never the password nor the CA
    shown = sbx.get_info().network["egress_proxy"]
    assert shown == {"address": TLS_ADDRESS, "username": USER,
                     "tls": {"server_name": server_name} if server_name else {}}
    raw = api.get(f"/sandboxes/{sbx.sandbox_id}").text
    assert PASSWORD not in raw and "BEGIN CERTIFICATE" not in raw and "caCert" not in raw


@pytest.mark.parametrize("how", ["wrong CA", "system trust store", "wrong server name", "plaintext proxy",
                                 "TLS proxy without tls", "TLS proxy with tls false"])
def test_tls_fails_closed(world, socks, socks_ca, make_sandbox, how):
    tls, address = {
        "wrong CA": (_tls((make_ca("another CA")[0],)), TLS_ADDRESS),
        "system trust store": (True, TLS_ADDRESS),
        "wrong server name": (_tls(socks_ca, server_name="allowed.test"), TLS_ADDRESS),
        "plaintext proxy": (_tls(socks_ca), f"{SOCKS}:1080"),
        "TLS proxy without tls": (None, TLS_ADDRESS),
        "TLS proxy with tls false": (False, TLS_ADDRESS),
    }[how]
    sbx = make_sandbox(network=_proxied(address=address, tls=tls))
    path = f"/closed-tls-{uuid.uuid4().hex}"
    before = len(_connects(socks))
    assert fetch(sbx, f"http://allowed.test{path}")[0] != 0
    assert fetch(sbx, f"https://allowed.test{path}")[0] != 0
    assert _seen(world, path) == []  # neither through the proxy nor directly
    assert _connects(socks)[before:] == []  # no CONNECT got through, in plaintext or otherwise


def test_tls_false_is_no_tls(world, socks, make_sandbox):
    sbx = make_sandbox(network=_proxied(tls=False))
    path = f"/tls-false-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}")[0] == 0
    assert _seen(world, path)[0]["client"] == SOCKS
    assert "tls" not in sbx.get_info().network["egress_proxy"]


def test_live_update_turns_tls_on_and_off(world, socks, socks_ca, make_sandbox):
    sbx = make_sandbox(network=_proxied())
    path = f"/update-tls-{uuid.uuid4().hex}"
    base = {"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "dns_servers": [world.dns]}
    proxy = {"address": TLS_ADDRESS, "username": USER, "password": PASSWORD}
    sbx.update_network({**base, "egress_proxy": {**proxy, "tls": _tls(socks_ca, server_name=SOCKS_NAME)}})
    assert fetch(sbx, f"http://allowed.test{path}")[0] == 0
    assert _seen(world, path)[0]["client"] == SOCKS
    assert sbx.get_info().network["egress_proxy"]["tls"] == {"server_name": SOCKS_NAME}
    sbx.update_network({**base, "egress_proxy": proxy})  # the same address, tls omitted: plaintext to a TLS port
    assert fetch(sbx, f"http://allowed.test{path}-off")[0] != 0
    assert _seen(world, f"{path}-off") == []


def test_bad_tls_options_are_refused_through_the_sdk(socks, socks_ca, make_sandbox):
    from e2b import SandboxException

    for tls, word in (({"ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "caCert"),
                      ({"ca_cert": pem(socks_ca[0]) + socks_ca[1].private_bytes(
                          serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode()}, "private key"),
                      ({"server_name": "not a name"}, "serverName")):
        with pytest.raises(SandboxException) as e:
            make_sandbox(network=_proxied(address=TLS_ADDRESS, tls=tls))
        assert e.value.status_code == 400 and word in str(e.value)


def test_tls_hops_leave_no_descriptors(world, socks, socks_ca, make_sandbox, sdk_env):
    """Each connection's TLS hop (a socket pair and the TLS connection) ends with it."""
    sbx = make_sandbox(network=_proxied(address=TLS_ADDRESS, tls=_tls(socks_ca, server_name=SOCKS_NAME)))
    url = f"http://allowed.test/fds-{uuid.uuid4().hex}"
    assert fetch(sbx, url)[0] == 0  # warm: the sandbox's resolver, the egress proxy's loop
    fds = lambda: len(os.listdir(f"/proc/{sdk_env.proc.pid}/fd"))  # noqa: E731
    before = fds()
    code, out = sh(sbx, f"for i in $(seq 40); do curl -sS -o /dev/null -m 5 {url}-$i || exit 1; done", timeout=120)
    assert code == 0, out
    deadline = time.monotonic() + 10
    while fds() > before + 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fds() <= before + 4, (before, fds())


HALF_CLOSE = """
import socket
s = socket.create_connection(("allowed.test", 80), timeout=8)
s.sendall(b"get /half-close HTTP/1.0")  # no line end: the world answers at the end of the request
s.shutdown(socket.SHUT_WR)
answer = b""
while chunk := s.recv(65536):
    answer += chunk
print(answer.split(b"\\r\\n")[0].decode())
"""


@pytest.mark.parametrize("tls", [True, False])
def test_a_half_close_reaches_the_world_and_the_answer_comes_back(world, socks, socks_ca, make_sandbox, tls):
    """The sandbox ends its sending and waits for the answer: over TLS the end goes to the proxy as
    a close_notify (E2B's behaviour), which the proxy passes on as a FIN. Lower case: not HTTP to
    the egress proxy, relayed as bytes."""
    net = _proxied(address=TLS_ADDRESS, tls=_tls(socks_ca)) if tls else _proxied()
    sbx = make_sandbox(network=net)
    sbx.files.write("/tmp/half_close.py", HALF_CLOSE)
    code, out = sh(sbx, "python3 /tmp/half_close.py")
    assert code == 0 and "501" in out, out  # the world's answer to a method it does not know
