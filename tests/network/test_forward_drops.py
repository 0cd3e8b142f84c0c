"""Another firewall that drops forwarded packets (dockerd sets its iptables FORWARD policy to DROP):
a sandbox's egress is forwarded, and an `accept` in sandlot's own table cannot overrule another
table's drop. Where that firewall has a DOCKER-USER chain the server lets its links through there
(its own rules still decide); where it has none, the server says so in its log.

The firewall is a table the test makes in dockerd's iptables-nft shape (a FORWARD base chain with
policy drop that jumps to DOCKER-USER) under a name of its own, so a real dockerd's `ip filter` is
never touched; the server finds dropping chains by hook and policy, whatever their table's name.
While it exists, forwarded packets of this machine are dropped: each test keeps it for seconds.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import ALLOWED, OTHER, fetch, network

from sandlot.runtimes.forward import ForwardDrops
from sandlot.runtimes.nft import Nft

CLOSED = (7, 28)


def _nft(*args: str) -> str:
    return subprocess.run(["nft", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def foreign_firewall(world):
    made = []

    def make(docker_user: bool) -> str:
        table = f"sltest_fw_{uuid.uuid4().hex[:8]}"
        made.append(table)
        commands = [f"add table ip {table}"]
        if docker_user:
            commands += [f"add chain ip {table} DOCKER-USER", f"add rule ip {table} DOCKER-USER return"]
        commands.append(f"add chain ip {table} FORWARD {{ type filter hook forward priority 0; policy drop; }}")
        if docker_user:
            commands.append(f"add rule ip {table} FORWARD jump DOCKER-USER")
        subprocess.run(["nft", "-f", "-"], input="\n".join(commands) + "\n", check=True, text=True)
        return table

    yield make
    for table in made:
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def _docker_user_rules(table: str) -> list[dict]:
    out = json.loads(_nft("-j", "list", "chain", "ip", table, "DOCKER-USER"))["nftables"]
    return [item["rule"] for item in out if "rule" in item and item["rule"].get("comment")]


def test_a_docker_user_chain_lets_sandboxes_through(world, make_sandbox, foreign_firewall):
    table = foreign_firewall(docker_user=True)
    sbx = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]))
    assert fetch(sbx, "http://allowed.test/") == (0, f"world {ALLOWED}\n")
    assert fetch(sbx, f"http://{OTHER}/")[0] in CLOSED  # sandlot's own rules still decide
    rules = _docker_user_rules(table)
    assert len(rules) == 2, rules
    matched = sorted(json.dumps(r["expr"]) for r in rules)
    assert all('"accept"' in m and '"sl' in m for m in matched), matched
    assert {r["comment"] for r in rules} == {rules[0]["comment"]} and rules[0]["comment"].startswith("sandlot_")


def test_a_drop_without_docker_user_is_reported(world, make_sandbox, foreign_firewall, sdk_env):
    table = foreign_firewall(docker_user=False)
    start = sdk_env.log.stat().st_size
    sbx = make_sandbox(allow_internet_access=True, network=network())
    assert fetch(sbx, f"http://{ALLOWED}/")[0] in CLOSED  # dropped there: that chain is not sandlot's
    with open(sdk_env.log, errors="replace") as f:
        f.seek(start)
        logged = f.read()
    assert f"nftables chain ip {table} FORWARD drops forwarded packets" in logged, logged[-3000:]


def test_the_rules_are_added_once_and_removed_at_stop(foreign_firewall):
    table = foreign_firewall(docker_user=True)
    nft = Nft()
    try:
        drops = ForwardDrops(nft, "sandlot_sltest", "sltest0-")
        drops.check()
        drops.check()
        assert [r["comment"] for r in _docker_user_rules(table)] == ["sandlot_sltest sandboxes"] * 2
        drops.remove()
        assert _docker_user_rules(table) == []
    finally:
        nft.close()
