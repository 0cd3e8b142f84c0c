"""Networked sandboxes leave nothing behind (links, nftables chains, namespaces), and a server
killed with -9 takes its sandboxes' networks over again when it starts."""

from __future__ import annotations

import json
import os
import signal

import pytest
from e2b import Sandbox
from host_resources import Footprint
from network_support import ALLOWED, DNS, OTHER, SOCKS, SOCKS_PASSWORD, SOCKS_USER, fetch

from support import rest_client, sdk_environment, start_server, wait_until

ALLOW_LIST = {"allowOut": ["allowed.test"], "denyOut": ["0.0.0.0/0"], "dnsServers": [DNS]}


@pytest.fixture
def own_server(tmp_path):
    servers = []

    def start(pool_size=2):
        srv = start_server(tmp_path / "home", pool_size=pool_size, extra_env={"SANDLOT_POOL_TEMPLATES": "base"})
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def _create(api, network=None, **extra) -> str:
    body = {"templateID": "base", "timeout": 300, **extra}
    if network is not None:
        body["network"] = network
    r = api.post("/v2/sandboxes", json=body)
    assert r.status_code == 201, r.text
    return r.json()["sandboxID"]


def test_200_networked_creates_and_kills_leave_nothing(world, own_server, tmp_path):
    fp = Footprint(tmp_path / "home")
    srv = own_server(pool_size=2)
    with rest_client(srv) as api:
        for i in range(200):
            net = ALLOW_LIST if i % 2 else {"dnsServers": [DNS]}
            sid = _create(api, network=net, allow_internet_access=True if i % 2 == 0 else None)
            if i % 50 == 0:  # now and then, show it really had its network
                with sdk_environment(srv):
                    assert fetch(Sandbox.connect(sid), "http://allowed.test/") == (0, f"world {ALLOWED}\n")
            assert api.delete(f"/sandboxes/{sid}").status_code == 204
            fp.note_slots()
        # while it runs, only its warm pool holds anything: two sandboxes, their prepared links
        def settled():
            dirs = {p.name for p in (srv.home / "sandboxes").glob("*")}
            return dirs if len(dirs) == 2 and all((srv.home / "sandboxes" / d / "state.json").exists()
                                                  for d in dirs) else None

        try:
            pooled = wait_until(settled, 90, message="the pool to settle")
        except AssertionError:
            raise AssertionError(f"the pool did not settle: {sorted(p.name for p in (srv.home / 'sandboxes').glob('*'))}"
                                 f"\n{srv.log.read_text()[-3000:]}") from None
    running = fp.resources(server_pid=srv.proc.pid)
    assert all(any(sid in link for sid in pooled) for link in running["links"]), running["links"]
    assert running["nft"] == [], running["nft"]
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left


def test_restart_keeps_adopted_networks_and_cleans_the_dead(world, own_server):
    srv = own_server(pool_size=0)
    with rest_client(srv) as api:
        kept = _create(api, network=ALLOW_LIST)
        dead = _create(api, network=ALLOW_LIST)
    with sdk_environment(srv):
        assert fetch(Sandbox.connect(kept), "http://allowed.test/")[0] == 0
    state = json.loads((srv.home / "sandboxes" / dead / "state.json").read_text())
    srv.stop(signal.SIGKILL)
    os.kill(state["pid"], signal.SIGKILL)  # this one dies while no server watches
    srv = own_server(pool_size=0)
    with sdk_environment(srv):
        sbx = Sandbox.connect(kept)
        assert fetch(sbx, "http://allowed.test/") == (0, f"world {ALLOWED}\n")  # DNS and rules, as before
        assert fetch(sbx, "http://other.test/")[0] == 6
        assert fetch(sbx, f"http://{OTHER}/")[0] in (7, 28)
        sbx.update_network({"allow_out": ["other.test"], "deny_out": ["0.0.0.0/0"], "dns_servers": [DNS]})
        assert fetch(sbx, "http://other.test/") == (0, f"world {OTHER}\n")
    fp = Footprint(srv.home)
    left = fp.resources(server_pid=srv.proc.pid)
    assert not any(dead in e for entries in left.values() for e in entries), left
    assert [e for e in left["links"] if kept not in e] == [] and left["links"]
    assert [e for e in left["nft"] if kept not in e] == [] and left["nft"]


def test_restart_keeps_header_rules_and_the_socks5_proxy(world, socks, own_server):
    """An adopted sandbox's TCP still goes through its SOCKS5 proxy at once; its rule pins are
    dropped at the restart and made again at its next lookup of the name."""
    srv = own_server(pool_size=0)
    proxy = {"address": f"{SOCKS}:1080", "username": SOCKS_USER, "password": SOCKS_PASSWORD}
    rules = {"allowed.test": [{"transform": {"headers": {"X-Secret": "kept"}}}]}
    with rest_client(srv) as api:
        sid = _create(api, network={**ALLOW_LIST, "egressProxy": proxy, "rules": rules})
    srv.stop(signal.SIGKILL)
    srv = own_server(pool_size=0)
    with sdk_environment(srv):
        sbx = Sandbox.connect(sid)
        assert fetch(sbx, "http://allowed.test/after-restart") == (0, f"world {ALLOWED}\n")
    (seen,) = [r for r in world.requests() if r["path"] == "/after-restart"]
    assert seen["client"] == SOCKS and seen["headers"].get("X-Secret") == "kept"
