"""The egress proxy (runtimes/egress_proxy.py) and the resolver (runtimes/dns.py) against a hostile
sandbox. One that wants a rule's secret on a request the rule does not name: a request for another
host on a connection to the rule's host (a CDN or a shared front end routes by the request's host,
not by the address or the SNI), and requests framed so that the upstream reads them otherwise than
the proxy does (smuggling: the proxy's next request head, with the secret, read by the upstream as
the body of the sandbox's own request, which an echoing or storing endpoint hands back). One that
wants more than its policy gives (its bandwidth cap), or to starve its neighbours of the host's
shared resolver."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import ALLOWED, DNS_FLOOD, network, sh

from support import checked_server

SECRET = f"Bearer sandlot-{uuid.uuid4().hex}"
TOKEN = SECRET.split()[1]
RULES = {"allowed.test": [{"transform": {"headers": {"Authorization": SECRET}}}]}

# Sends argv[2] (hex) on one connection to argv[1]:80, ends its side, prints what came back
_RAW = """
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
s.sendall(bytes.fromhex(sys.argv[2]))
s.shutdown(socket.SHUT_WR)
got = b""
try:
    while chunk := s.recv(65536):
        got += chunk
except OSError:
    pass
print(got.decode("latin-1"))
"""


@pytest.fixture(scope="module")
def server(world):
    """This module's own server: its proxy must trust the world's HTTPS certificate."""
    with checked_server(extra_env={"SANDLOT_EGRESS_CA_FILE": str(world.ca), "SANDLOT_POOL_TEMPLATES": "base"}) as srv:
        yield srv


@pytest.fixture
def sbx(world, make_sandbox):
    sbx = make_sandbox(network=network(allow_out=["allowed.test", "other.test"], deny_out=[ALL_TRAFFIC],
                                       rules=RULES))
    sbx.files.write("/tmp/raw.py", _RAW)
    return sbx


def _raw(sbx, data: bytes) -> str:
    return sh(sbx, f"python3 /tmp/raw.py allowed.test {data.hex()}")[1]


def _seen(world, path: str) -> list[dict]:
    return [r for r in world.requests() if path in r["path"] or path in r.get("body", "")]


def _leaked(world) -> list[dict]:
    """Requests the world saw with the secret anywhere but the Authorization header."""
    return [r for r in world.requests()
            if TOKEN in r.get("body", "") or TOKEN in r["path"]
            or any(TOKEN in v for n, v in r["headers"].items() if n.lower() != "authorization")]


def test_https_requests_for_another_host_get_no_headers(world, sbx):
    """TLS verified for allowed.test, HTTP/1.1 requests on it for other.test: a shared front end
    would route them to other.test, so they get nothing (as over HTTP/2, by :authority)."""
    path = f"/fronted-{uuid.uuid4().hex}"
    code, out = sh(sbx, f"curl -sS -m 10 -H 'Host: other.test' https://allowed.test{path}/1 "
                        f"-H 'Host: other.test' https://allowed.test{path}/2")
    assert code == 0 and out == f"world {ALLOWED}\n" * 2, out
    seen = _seen(world, path)
    assert [r["headers"]["Host"] for r in seen] == ["other.test"] * 2
    assert all("Authorization" not in r["headers"] for r in seen), seen
    # the rule's own host still gets them, with a port in its Host too
    code, out = sh(sbx, f"curl -sS -m 10 https://allowed.test{path}/3 -H 'Host: allowed.test:443' "
                        f"https://allowed.test{path}/4")
    assert code == 0, out
    assert [r["headers"].get("Authorization") for r in _seen(world, f"{path}/")[2:]] == [SECRET] * 2


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_request_target_naming_another_host_gets_no_headers(world, sbx, scheme):
    """An absolute-form target names the host a server must use, whatever the Host field says
    (RFC 9112 3.2.2); two Host fields are ambiguous. Such requests are not sent with the secret."""
    path = f"/absolute-{scheme}-{uuid.uuid4().hex}"
    sh(sbx, f"curl -sS -m 10 --request-target http://other.test{path} {scheme}://allowed.test/")
    if scheme == "http":
        _raw(sbx, f"GET {path}/twice HTTP/1.1\r\nHost: allowed.test\r\nHost: other.test\r\n\r\n".encode())
    assert all("Authorization" not in r["headers"] for r in _seen(world, path)), _seen(world, path)
    # a target that names the rule's host is its host
    code, out = sh(sbx, f"curl -sS -m 10 --request-target http://allowed.test{path}/ok {scheme}://allowed.test/")
    assert code == 0 and out == f"world {ALLOWED}\n", out
    assert [r["headers"].get("Authorization") for r in _seen(world, f"{path}/ok")] == [SECRET]


def test_a_bare_lf_cannot_smuggle_the_next_request_into_a_body(world, sbx):
    """The proxy ends a field at CRLF, many servers (Python's, nginx) at a bare LF too: a
    Content-Length hidden behind one made the upstream read the proxy's next request, its
    Authorization set by the rule, as the body of the sandbox's POST."""
    path = f"/smuggle-{uuid.uuid4().hex}"
    _raw(sbx, (f"POST {path} HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\nContent-Length: 600\r\n\r\n"
               f"GET {path}/next HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
               f"GET {path}/pad HTTP/1.1\r\nX-Pad: {'p' * 700}\r\n\r\n").encode())
    assert _leaked(world) == []


def test_a_get_body_cannot_smuggle_the_next_request_into_a_body(world, sbx):
    """Framed alike by the proxy and by RFC 9112, but a server may leave a GET's body unread and
    take it for the next request (Python's http.server does): a POST whose Content-Length then
    swallowed the proxy's next request, with the secret."""
    path = f"/get-body-{uuid.uuid4().hex}"
    inner = f"POST {path}/capture HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 300\r\n\r\n"
    out = _raw(sbx, (f"GET {path} HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: {len(inner)}\r\n\r\n{inner}"
                     f"GET {path}/next HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
                     f"GET {path}/pad HTTP/1.1\r\nX-Pad: {'p' * 400}\r\n\r\n").encode())
    assert out.startswith("HTTP/1.1 200"), out  # the GET itself is answered
    assert _leaked(world) == []
    # a GET with a body on a connection of its own still gets the headers
    code, out = sh(sbx, f"curl -sS -m 10 -X GET -d q=1 http://allowed.test{path}/alone")
    assert code == 0 and out == f"world {ALLOWED}\n", out
    assert [r["headers"].get("Authorization") for r in _seen(world, f"{path}/alone")] == [SECRET]


@pytest.mark.parametrize("request_bytes", [
    # a field ended by a bare LF, or holding a control character a server may take as whitespace
    b"POST {path} HTTP/1.1\r\nHost: allowed.test\r\nX: y\nContent-Length: 5\r\n\r\nhello",
    b"POST {path} HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: \x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    # a chunk size Python reads and others do not (a prefix, an underscore, a sign)
    b"POST {path} HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"POST {path} HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    # chunk data not ended by CRLF
    b"POST {path} HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n",
], ids=["bare-lf", "vtab-te", "hex-prefix", "signed", "no-crlf-after-data"])
def test_requests_framed_ambiguously_are_not_forwarded(world, sbx, request_bytes):
    """What servers may frame otherwise than the proxy never reaches one (the connection ends)."""
    path = f"/framing-{uuid.uuid4().hex}"
    _raw(sbx, request_bytes.replace(b"{path}", path.encode()))
    assert _seen(world, path) == []
    # a well-framed chunked POST still passes, with the headers
    _raw(sbx, f"POST {path}-ok HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n".encode())
    (ok,) = _seen(world, f"{path}-ok")
    assert ok["body"] == "hello" and ok["headers"]["Authorization"] == SECRET


@pytest.mark.parametrize("rules", ["name", "socks", "none"])
def test_the_bandwidth_cap_holds_through_the_proxy(world, socks, api, rules):
    """sandlot's `bandwidthMbps` caps a sandbox's link each way in the egress and forward chains;
    what goes through the egress proxy (a rule's host; all TCP with a SOCKS5 proxy) must be capped
    as well. 4 Mbit/s is 500 KiB/s, 125 KiB of burst (test_egress.py): 1.5 MB takes over 1.6 s."""
    from e2b import Sandbox
    from network_support import SOCKS, SOCKS_PASSWORD, SOCKS_USER
    extra = {"name": {"rules": RULES}, "none": {},
             "socks": {"egressProxy": {"address": f"{SOCKS}:1080", "username": SOCKS_USER,
                                       "password": SOCKS_PASSWORD}}}[rules]
    net = {"dnsServers": [world.dns], "allowOut": ["allowed.test"], "denyOut": [ALL_TRAFFIC], "bandwidthMbps": 4,
           **extra}
    r = api.post("/v2/sandboxes", json={"templateID": "base", "network": net})
    assert r.status_code == 201, r.text
    sbx = Sandbox.connect(r.json()["sandboxID"])
    try:
        size = 1_500_000
        least = 0.95 * (size - 625 * 1024) / (500 * 1024)
        code, out = sh(sbx, f"curl -sS -m 20 -o /dev/null -w '%{{time_total}} %{{size_download}}' "
                            f"http://allowed.test/bytes/{size}")
        assert code == 0 and out.split()[1] == str(size), out
        assert float(out.split()[0]) >= least, f"down: {out}"
        code, out = sh(sbx, f"head -c {size} /dev/zero > /tmp/up && curl -sS -m 20 -o /dev/null "
                            f"-w '%{{time_total}}' --data-binary @/tmp/up http://allowed.test/up")
        assert code == 0, out
        assert float(out) >= least, f"up: {out}"
    finally:
        sbx.kill()


# Holds argv[2] TCP connections to argv[1]:53 (the resolver) for argv[3] seconds, having said how many
_HOLD = """
import socket, sys, time
held = []
for _ in range(int(sys.argv[2])):
    try:
        held.append(socket.create_connection((sys.argv[1], 53), timeout=2))
    except OSError:
        break
print(len(held), flush=True)
time.sleep(float(sys.argv[3]))
"""


def _gateway(sbx) -> str:
    return sh(sbx, "awk '/^nameserver/ {print $2}' /etc/resolv.conf")[1].strip()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_one_sandbox_cannot_hold_the_resolvers_fds(server, sbx):
    """TCP to port 53 goes to the host's resolver, in the server's process, whose open files every
    sandbox and the API share: one sandbox holding connections open (a question every few seconds
    keeps each one) must not take them all."""
    sbx.files.write("/tmp/hold.py", _HOLD)
    before = _fds(server.proc.pid)
    sbx.commands.run(f"python3 /tmp/hold.py {_gateway(sbx)} 1000 10 > /tmp/held 2>&1", background=True)
    deadline = time.monotonic() + 20
    while not (held := sh(sbx, "cat /tmp/held")[1].strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert held == "1000", held  # the sandbox did open them (the server may close them at once)
    assert _fds(server.proc.pid) - before < 100


def test_one_sandbox_cannot_starve_its_neighbours_of_dns(world, make_sandbox):
    """A sandbox asking for names its upstream is slow to answer (here an upstream that never does,
    an address of the world's link nobody holds) fills the resolver's questions in flight: its
    neighbour's questions must still be answered."""
    slow = make_sandbox(allow_internet_access=True, network={"dns_servers": ["198.18.0.99"]})
    slow.files.write("/tmp/flood.py", DNS_FLOOD)
    sbx = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]))
    flood = slow.commands.run(f"python3 /tmp/flood.py {_gateway(slow)} 500 8", background=True)
    time.sleep(1)
    code, out = sh(sbx, "python3 -c \"import socket; print(socket.gethostbyname('allowed.test'))\"")
    assert int(flood.wait().stdout) > 3000  # the flood did run
    assert (code, out.strip()) == (0, ALLOWED), out


# One kept-alive connection to allowed.test:80: a request, then (once /tmp/go exists) another;
# prints what each got
_KEPT = """
import os, socket, sys, time
s = socket.create_connection(("allowed.test", 80), timeout=3)
def ask(path):
    s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n".encode())
    got = ""
    try:
        while "world" not in got and (chunk := s.recv(65536).decode()):
            got += chunk
    except OSError as e:
        got = repr(e)
    print(repr(got.splitlines()[-1] if got else "closed"), flush=True)
ask(sys.argv[1] + "/1")
open("/tmp/asked", "w").close()
while not os.path.exists("/tmp/go"):
    time.sleep(0.05)
ask(sys.argv[1] + "/2")
"""


@pytest.mark.parametrize("change", ["deny", "no-rules", "still-allowed"])
def test_a_policy_change_reaches_open_connections(world, make_sandbox, change):
    """A live update (PUT /sandboxes/{id}/network) takes a host away, or a rule's secret (one that
    leaked, being replaced): a connection the sandbox opened before must not keep either. One the
    new policy still passes goes on."""
    kept = network(allow_out=["allowed.test", "other.test"], deny_out=[ALL_TRAFFIC],
                   **({"rules": RULES} if change == "no-rules" else {}))
    sbx = make_sandbox(network=kept)
    sbx.files.write("/tmp/kept.py", _KEPT)
    path = f"/kept-{change}-{uuid.uuid4().hex}"
    run = sbx.commands.run(f"python3 /tmp/kept.py {path}", background=True)
    deadline = time.monotonic() + 10
    while sh(sbx, "test -e /tmp/asked")[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if change == "deny":
        sbx.update_network(network(allow_out=["other.test"], deny_out=[ALL_TRAFFIC]))
    elif change == "still-allowed":
        sbx.update_network(network(allow_out=["allowed.test", "a.wild.test"], deny_out=[ALL_TRAFFIC]))
    else:
        sbx.update_network(network(allow_out=["allowed.test", "other.test"], deny_out=[ALL_TRAFFIC]))
    sh(sbx, "touch /tmp/go")
    first, second = run.wait().stdout.splitlines()
    assert first == repr(f"world {ALLOWED}"), first
    seen = _seen(world, path)
    assert [r["path"] for r in seen][:1] == [f"{path}/1"]
    if change == "deny":
        assert second != repr(f"world {ALLOWED}") and len(seen) == 1, (second, seen)
    elif change == "still-allowed":
        assert second == repr(f"world {ALLOWED}") and len(seen) == 2, (second, seen)
    else:
        assert all(r["headers"].get("Authorization") != SECRET for r in seen[1:]), seen
