"""Fixtures for the network suite: the sandboxes' outside world, built on this machine.

`world` is a network namespace made for the session with a veth to the host (198.18.0.1/24 on the
host, the benchmark range): HTTP on 198.18.0.2 (allowed.test), .3 (other.test) and .4 (an allowed
name's neighbour that no name points at), HTTPS on .2, DNS on .53 (dnslib, tests/network/world.py).
Names that rebind to closed addresses resolve there too. Nothing is ever sent to another address:
the metadata address is routed into the world for the session, so a rule that let it through would
show up as an answer from the world, not as traffic leaving the machine. `socks`: a SOCKS5 server
in the world (socks_server.py, on SOCKS:1080, SOCKS_USER/SOCKS_PASSWORD; inside TLS on
SOCKS:SOCKS_TLS_PORT, its certificate from `socks_ca`) and its CONNECT log.
`h2_world`: an HTTP/2 server in the world (h2_server.py, h2.test on H2: h2 over TLS on 443 with
the world's certificate, h2c on 80) and its request log.

The shared fixtures (tests/conftest.py) start the server and make sandboxes of `sdk_class`, the
official e2b SDK's; its environment points at the server for every module here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
from e2b import Sandbox
from network_support import (H2, HERE, SOCKS, SOCKS_NAME, SOCKS_PASSWORD, SOCKS_TLS_PORT, SOCKS_USER,
                             outside_world, make_ca, make_leaf)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the network suite needs root (network namespaces, the namespace runtime)")
    with outside_world(tmp_path_factory.mktemp("world")) as w:
        yield w


@pytest.fixture(scope="session")
def socks_ca():
    """The CA (certificate, key) of the SOCKS5 server's TLS certificate (for SOCKS and SOCKS_NAME)."""
    return make_ca("sandlot test SOCKS CA")


@pytest.fixture(scope="session")
def socks(world, socks_ca, tmp_path_factory):
    """The world's SOCKS5 server on SOCKS:1080 and, inside TLS, SOCKS:SOCKS_TLS_PORT
    (username/password); its CONNECT log."""
    d = tmp_path_factory.mktemp("socks")
    log = d / "connects.log"
    cert, key = make_leaf(socks_ca, [SOCKS_NAME], [SOCKS])
    (d / "cert.pem").write_bytes(cert)
    (d / "key.pem").write_bytes(key)
    with _in_world(world, "socks_server.py", SOCKS, "1080", str(world.zone), str(log), SOCKS_USER, SOCKS_PASSWORD,
                   "--tls", str(SOCKS_TLS_PORT), str(d / "cert.pem"), str(d / "key.pem")):
        yield log


@pytest.fixture(scope="session")
def h2_world(world, tmp_path_factory):
    """The world's HTTP/2 server on H2 (h2.test); its request log (JSON lines)."""
    log = tmp_path_factory.mktemp("h2") / "requests.log"
    with _in_world(world, "h2_server.py", H2, str(world.ca), str(world.ca.with_name("key.pem")), str(log)):
        yield log


@contextlib.contextmanager
def _in_world(world, script: str, *args: str):
    """One of this directory's servers run in the world's namespace, once it prints "ready"."""
    proc = subprocess.Popen(["ip", "netns", "exec", world.netns, sys.executable, str(HERE / script), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def sdk_class():
    return Sandbox


@pytest.fixture(scope="module", autouse=True)
def _sdk_env(sdk_env):
    return sdk_env


@pytest.fixture(autouse=True)
def _server_log_on_failure(request, sdk_env):
    start = sdk_env.log.stat().st_size
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        with open(sdk_env.log, errors="replace") as f:
            f.seek(start)
            print("---- server log during the test ----\n" + f.read()[-4000:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep
