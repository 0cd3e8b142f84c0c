"""The operator's SANDLOT_EGRESS setting: `on-request` (the default, the session's server: the rest of
this suite) gives a sandbox the network its create or update asks for; `off` gives none whatever is
asked. The e2b SDK up to 2.50 sends allow_internet_access=true on every create, so with `off` a bare
flag gets a sandbox without a network (and getInfo says so), while explicit rules are refused with a
403 that names the setting. A server restarted with `off` takes away what an earlier run gave."""

from __future__ import annotations

import signal

import pytest
from e2b import Sandbox
from e2b.sandbox.network import ALL_TRAFFIC
from host_resources import Footprint
from network_support import ALLOWED, DNS, OTHER, fetch, network, sh

from support import kill_quietly, rest_client, sdk_environment, start_server

LINKS = "python3 -c \"import socket; print(' '.join(n for _, n in socket.if_nameindex()))\""
ALLOW_LIST = {"allowOut": ["allowed.test"], "denyOut": [ALL_TRAFFIC], "dnsServers": [DNS]}


@pytest.fixture
def own_server(tmp_path):
    servers = []

    def start(egress: str, pool_size: int = 1):
        srv = start_server(tmp_path / "home", pool_size=pool_size,
                           extra_env={"SANDLOT_POOL_TEMPLATES": "base", "SANDLOT_EGRESS": egress})
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def _only_loopback(sbx) -> bool:
    return sh(sbx, LINKS)[1].split() == ["lo"]


def _refused(r, word: str = "SANDLOT_EGRESS=off") -> bool:
    return r.status_code == 403 and r.json()["code"] == 403 and word in r.json()["message"]


def test_on_request_gives_what_is_asked(world, make_sandbox):
    sbx = make_sandbox(allow_internet_access=True, network=network())
    assert sbx.get_info().allow_internet_access is True
    assert fetch(sbx, f"http://{OTHER}/") == (0, f"world {OTHER}\n")


def test_off_gives_no_network_to_a_bare_flag_and_refuses_rules(world, own_server, tmp_path):
    fp = Footprint(tmp_path / "home")
    srv = own_server("off")
    with sdk_environment(srv), rest_client(srv) as api:
        for _ in range(2):  # the first comes from the pool, the second is made cold
            sbx = Sandbox.create(allow_internet_access=True, timeout=120)
            try:
                assert sbx.get_info().allow_internet_access is False
                assert _only_loopback(sbx)
                assert fetch(sbx, f"http://{ALLOWED}/")[0] != 0
                # the bare flag again through an update: still nothing; rules: refused, nothing changed
                sbx.update_network({"allow_internet_access": True})
                assert sbx.get_info().allow_internet_access is False and _only_loopback(sbx)
                r = api.put(f"/sandboxes/{sbx.sandbox_id}/network", json=ALLOW_LIST)
                assert _refused(r), r.text
                assert _only_loopback(sbx) and fetch(sbx, "http://allowed.test/")[0] != 0
            finally:
                kill_quietly(sbx)
            fp.note_slots()
        for body in ({"network": ALLOW_LIST}, {"allow_internet_access": True, "network": {"dnsServers": [DNS]}},
                     {"network": {"denyOut": ["10.0.0.0/8"]}}):
            r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, **body})
            assert _refused(r), (body, r.text)
        # asking for nothing, or only for ports in, is no request for egress
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, "allow_internet_access": False,
                                            "network": {"allowPublicTraffic": False}})
        assert r.status_code == 201, r.text
        assert api.delete(f"/sandboxes/{r.json()['sandboxID']}").status_code == 204
        # nothing of a network was made for the pool either: no link on the host
        assert fp.resources(server_pid=srv.proc.pid)["links"] == []
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left


def test_a_restart_with_off_takes_networks_away(world, own_server):
    srv = own_server("on-request", pool_size=0)
    with rest_client(srv) as api:
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300, "network": ALLOW_LIST})
        assert r.status_code == 201, r.text
        sid = r.json()["sandboxID"]
    with sdk_environment(srv):
        assert fetch(Sandbox.connect(sid), "http://allowed.test/") == (0, f"world {ALLOWED}\n")
    srv.stop(signal.SIGKILL)  # its sandbox stays, for the next start to adopt
    srv = own_server("off", pool_size=0)
    with sdk_environment(srv):
        sbx = Sandbox.connect(sid)
        try:
            info = sbx.get_info()
            assert info.allow_internet_access is False and not (info.network or {}).get("allow_out"), info
            assert _only_loopback(sbx)
            assert fetch(sbx, "http://allowed.test/")[0] != 0
            held = Footprint(srv.home).resources(server_pid=srv.proc.pid)
            assert held["links"] == [] and held["nft"] == [], held
        finally:
            sbx.kill()
