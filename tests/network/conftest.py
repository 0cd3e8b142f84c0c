"""Fixtures for the network suite: the sandboxes' outside world, built on this machine.

`world` is a network namespace made for the session with a veth to the host (198.18.0.1/24 on the
host, the benchmark range): HTTP on 198.18.0.2 (allowed.test), .3 (other.test) and .4 (an allowed
name's neighbour that no name points at), HTTPS on .2, DNS on .53 (dnslib, tests/network/world.py).
Names that rebind to closed addresses resolve there too. Nothing is ever sent to another address:
the metadata address is routed into the world for the session, so a rule that let it through would
show up as an answer from the world, not as traffic leaving the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2b import Sandbox

from net_support import ALLOWED, DNS, HERE, HOST, METADATA, NEIGHBOUR, OTHER, ZONE


@dataclass
class World:
    netns: str
    link: str
    log: Path  # the HTTP servers' request log (JSON lines)
    dns: str = DNS

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the network suite needs root (network namespaces, the namespace runtime)")
    d = tmp_path_factory.mktemp("world")
    netns, link = f"sandlot-world-{os.getpid()}", f"slw{os.getpid() % 100000}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=allowed.test"],
                   check=True, capture_output=True)
    (d / "zone.json").write_text(json.dumps(ZONE))
    _ip("netns", "add", netns)
    proc = None
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{HOST}/24", "dev", link)
        _ip("link", "set", link, "up")
        for address in (ALLOWED, OTHER, NEIGHBOUR, DNS, METADATA):
            _ip("-n", netns, "addr", "add", f"{address}/{24 if address != METADATA else 32}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("route", "add", f"{METADATA}/32", "via", ALLOWED)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, str(HERE / "world.py"),
             "--http", ALLOWED, OTHER, NEIGHBOUR, METADATA, "--dns", DNS, "--zone", str(d / "zone.json"),
             "--cert", str(d / "cert.pem"), "--key", str(d / "key.pem"), "--log", str(d / "requests.log")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        yield World(netns, link, d / "requests.log")
    finally:
        if proc is not None:
            proc.stdin.close()
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "route", "del", f"{METADATA}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


@pytest.fixture(scope="module", autouse=True)
def sdk_env(server):
    """The official SDK pointed at the session's server (e2b-protocol.md §2.1, mode A)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        mp.delenv("E2B_DEBUG", raising=False)
        yield server


@pytest.fixture
def make_sandbox(sdk_env):
    created = []

    def make(**kwargs):
        kwargs.setdefault("timeout", 300)
        sbx = Sandbox.create(**kwargs)
        created.append(sbx)
        return sbx

    yield make
    for sbx in created:
        try:
            sbx.kill()
        except Exception:
            pass
