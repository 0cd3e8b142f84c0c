"""E2B's `network.rules` (issue 12): per-host headers set on a sandbox's HTTP and HTTPS requests by
the egress proxy on the host (runtimes/egress_proxy.py), seen at the world's servers and never
inside the sandbox. HTTPS is terminated with a leaf of the server's egress CA, which the sandbox
trusts (curl verifies, no -k), and dialled upstream with real verification: this module's server
trusts the world's self-signed certificate through SANDLOT_EGRESS_CA_FILE, and a name the
certificate does not cover fails closed.

HTTP/2: the world's h2 server (h2_server.py, h2.test) speaks only h2, its HTTP/1.1 server on
allowed.test only HTTP/1.1; curl in the sandbox offers h2 to both, and gets what the upstream
chose. A hyper-h2 client copied into the sandbox (h2_client.py) checks what curl cannot show."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import (ALLOWED, HERE, NEIGHBOUR, OTHER, SOCKS, SOCKS_PASSWORD, SOCKS_USER, fetch, loop_thread,
                             network, sh, wakeups)

from support import checked_server

SECRET = f"Bearer sandlot-{uuid.uuid4().hex}"
RULES = {"allowed.test": [{"transform": {"headers": {"Authorization": SECRET}}},
                          {"transform": {"headers": {"X-Team": "blue"}}}]}
CA_FILE = "/usr/local/share/ca-certificates/sandlot-egress.crt"
H2_SECRET = f"Bearer h2-{uuid.uuid4().hex}"
H2_RULES = {"h2.test": [{"transform": {"headers": {"Authorization": H2_SECRET, "X-Team": "green"}}}], **RULES}


@pytest.fixture(scope="module")
def server(world):
    """This module's own server: its proxy must trust the world's HTTPS certificate."""
    with checked_server(extra_env={"SANDLOT_EGRESS_CA_FILE": str(world.ca), "SANDLOT_POOL_TEMPLATES": "base"}) as srv:
        yield srv


def _allow_list(**kwargs) -> dict:
    return network(allow_out=["allowed.test", "other.test", "mismatch.test", "h2.test"], deny_out=[ALL_TRAFFIC],
                   **kwargs)


def _seen(world, path: str) -> list[dict]:
    return [r for r in world.requests() if r["path"] == path]


def _curl(sbx, url: str, *flags: str) -> tuple[int, str]:
    """curl from inside with the sandbox's own trust store (no -k unless given)."""
    return sh(sbx, f"curl -sS --connect-timeout 2 -m 10 {' '.join(flags)} {url}")


def test_http_requests_get_the_rule_headers(world, make_sandbox):
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    path = f"/http-{uuid.uuid4().hex}"
    # the sandbox's own Authorization is replaced; two requests on one connection both get it
    code, out = sh(sbx, f"curl -sS -m 10 -H 'Authorization: mine' http://allowed.test{path} http://allowed.test{path}")
    assert code == 0, out
    assert out == f"world {ALLOWED}\n" * 2
    seen = _seen(world, path)
    assert len(seen) == 2
    for r in seen:
        assert r["port"] == 80
        assert r["headers"]["Authorization"] == SECRET
        assert r["headers"]["X-Team"] == "blue"
        assert r["headers"]["Host"] == "allowed.test"


def test_a_wildcard_rule_covers_names_below_it(world, make_sandbox):
    rules = {"*.wild.test": [{"transform": {"headers": {"X-Wild": "yes"}}}], **RULES}
    sbx = make_sandbox(network=network(allow_out=["*.wild.test", "allowed.test"], deny_out=[ALL_TRAFFIC],
                                       rules=rules))
    path = f"/wild-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://a.wild.test{path}") == (0, f"world {NEIGHBOUR}\n")
    (seen,) = _seen(world, path)
    assert seen["headers"]["X-Wild"] == "yes" and "Authorization" not in seen["headers"]  # never merged


def test_bodies_keep_their_framing_on_a_kept_alive_connection(world, make_sandbox):
    """A chunked POST, a sized POST and a GET on one connection: each arrives whole, each with the
    headers (the proxy parses requests only for their framing)."""
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    path = f"/post-{uuid.uuid4().hex}"
    url = f"https://allowed.test{path}"
    code, out = _curl(sbx, f"-v -H 'Transfer-Encoding: chunked' -d chunked-body {url}/1 "
                           f"--next -v -d sized-body {url}/2 --next -v {url}/3")
    assert code == 0 and out.count(f"world {ALLOWED}") == 3, out
    assert out.count("existing connection") == 2, out  # curl kept the connection for the next two
    seen = {r["path"]: r for r in world.requests() if r["path"].startswith(path)}
    assert seen[f"{path}/1"]["body"] == "chunked-body" and seen[f"{path}/2"]["body"] == "sized-body"
    assert all(seen[f"{path}/{i}"]["headers"]["Authorization"] == SECRET for i in (1, 2, 3))


def test_finished_connections_hold_nothing_upstream(world, make_sandbox):
    """After the sandbox's HTTPS connections end, the proxy's kept-alive upstream connections go
    too (within a quiet second), not at the upstream's or the proxy's idle timeout."""
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    code, out = sh(sbx, "for i in 1 2 3 4 5; do curl -sS -m 5 https://allowed.test/held > /dev/null || exit 1; done")
    assert code == 0, out

    def held():
        out = subprocess.run(["ss", "-Htn", "state", "established", "dst", f"{ALLOWED}:443"],
                             capture_output=True, text=True, check=True).stdout
        return out.strip() or None

    # 20 s for a loaded host; held until an idle timeout, they stay 300 s (egress_http.IDLE_TIMEOUT)
    deadline = time.monotonic() + 20
    while held() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert held() is None


def test_https_is_verified_inside_and_gets_the_headers(world, make_sandbox):
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    path = f"/https-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"https://allowed.test{path} https://allowed.test{path}", "-v")
    assert code == 0, out
    assert out.count(f"world {ALLOWED}") == 2
    assert "sandlot egress CA" in out  # the certificate the sandbox verified is the proxy's leaf
    seen = _seen(world, path)
    assert [r["port"] for r in seen] == [443, 443]
    assert all(r["headers"]["Authorization"] == SECRET for r in seen)
    # Python's requests-style variables point at the bundle with the CA (the login profile sets them)
    url = f"https://allowed.test{path}-py"
    code, out = sh(sbx, f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=10)"
                        ".read().decode(), end='')\"")
    assert code == 0 and out == f"world {ALLOWED}\n", out
    assert _seen(world, f"{path}-py")[0]["headers"]["Authorization"] == SECRET


# An HTTPS GET of allowed.test argv[1] whose ClientHello goes in pieces (the record's header, then
# two more), argv[2] seconds apart (comma-separated); prints the answer's last line
_SPLIT_HELLO = """
import socket, ssl, sys, time
pauses = [float(p) for p in sys.argv[2].split(",")]
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ssl.create_default_context().wrap_bio(inc, out, server_hostname="allowed.test")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
s = socket.create_connection(("allowed.test", 443), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for piece, pause in zip((hello[:5], hello[5:60], hello[60:]), pauses + [0]):
    s.sendall(piece)
    time.sleep(pause)
def step(call):
    while True:
        try:
            result = call()
            s.sendall(out.read())
            return result
        except ssl.SSLWantReadError:
            s.sendall(out.read())
            inc.write(s.recv(65536) or sys.exit("closed"))
step(tls.do_handshake)
step(lambda: tls.write(f"GET {sys.argv[1]} HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n".encode()))
got = b""
while not (b"\\r\\n\\r\\nworld" in got and got.endswith(b"\\n")):
    got += step(lambda: tls.read(65536))
print(got.decode().splitlines()[-1])
"""


def test_a_client_hello_sent_in_pieces_is_read_without_polling(server, world, make_sandbox):
    """A ClientHello may come over several segments, far apart (a slow or hostile client): the proxy
    waits for the whole record (2 s at most) to read its SNI, so the rule's headers are still set;
    and while it waits it does not wake to look (it polled every 10 ms: ~150 wakeups of its thread
    in a 1.5 s pause, where a hello sent at once costs the same as one paused)."""
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    sbx.files.write("/tmp/split.py", _SPLIT_HELLO)
    proxy = loop_thread(server.proc.pid, json.loads((server.home / "network.json").read_text())["proxy_port"])
    costs = {}
    for pauses in ("0,0", "0.2,1.5"):
        path = f"/split-{uuid.uuid4().hex}"
        before = wakeups(server.proc.pid, proxy)
        code, out = sh(sbx, f"python3 /tmp/split.py {path} {pauses}")
        costs[pauses] = wakeups(server.proc.pid, proxy) - before
        assert (code, out.strip()) == (0, f"world {ALLOWED}"), out
        (seen,) = _seen(world, path)
        assert seen["headers"]["Authorization"] == SECRET  # the SNI was read: terminated for the rule
    assert costs["0.2,1.5"] - costs["0,0"] < 30, costs


def test_the_secret_never_enters_the_sandbox(world, make_sandbox):
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    token = SECRET.split()[1]
    assert token not in sh(sbx, "env; cat /proc/1/environ", user="root")[1]
    places = "/etc /home /root /tmp /usr/local /var /run"
    code, out = sh(sbx, f"grep -rIls --exclude-dir=proc --exclude-dir=sys {token} {places}", user="root", timeout=60)
    assert out.strip() == "", out
    assert token not in str(sbx.get_info())  # getInfo shows the rule's header names, not their values
    # a host no rule names gets nothing
    path = f"/other-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://other.test{path}") == (0, f"world {OTHER}\n")
    (seen,) = _seen(world, path)
    assert "Authorization" not in seen["headers"] and "X-Team" not in seen["headers"]


def test_an_upstream_that_does_not_verify_fails_closed(world, make_sandbox):
    """mismatch.test is the world's HTTPS server, whose certificate names only allowed.test: the
    proxy never sends the request (not even when the sandbox itself would accept anything)."""
    sbx = make_sandbox(network=_allow_list(rules={"mismatch.test": RULES["allowed.test"]}))
    path = f"/mismatch-{uuid.uuid4().hex}"
    for flags in ((), ("-k",)):
        code, out = _curl(sbx, f"https://mismatch.test{path}", *flags)
        assert code != 0, out
    assert _seen(world, path) == []


def test_a_sandbox_without_rules_is_not_redirected(world, make_sandbox):
    sbx = make_sandbox(network=_allow_list())
    path = f"/plain-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"https://allowed.test{path}", "-k", "-v")
    assert code == 0, out
    assert "sandlot egress CA" not in out  # the world's own certificate, end to end
    assert sh(sbx, f"test -e {CA_FILE}")[0] == 1
    (seen,) = _seen(world, path)
    assert "Authorization" not in seen["headers"]


def test_rules_apply_through_a_users_socks5_proxy(world, socks, make_sandbox):
    proxy = {"address": f"{SOCKS}:1080", "username": SOCKS_USER, "password": SOCKS_PASSWORD}
    sbx = make_sandbox(network=_allow_list(rules=RULES, egress_proxy=proxy))
    path = f"/socks-rules-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"https://allowed.test{path}")
    assert code == 0 and out == f"world {ALLOWED}\n", out
    (seen,) = _seen(world, path)
    assert seen["client"] == SOCKS and seen["headers"]["Authorization"] == SECRET


def test_the_proxy_port_is_closed_to_a_direct_connection(server, make_sandbox):
    """Only connections the rules redirected reach the egress proxy; its port on the sandbox's
    gateway answers nothing."""
    port = json.loads((server.home / "network.json").read_text())["proxy_port"]
    sbx = make_sandbox(network=_allow_list(rules=RULES))
    gateway = sh(sbx, "awk '/^nameserver/ {print $2}' /etc/resolv.conf")[1].strip()
    code, out = sh(sbx, f"curl -sS --connect-timeout 2 -m 4 http://{gateway}:{port}/")
    assert code in (7, 28), out


def test_rules_grant_no_access(world, make_sandbox):
    sbx = make_sandbox(network=network(allow_out=["other.test"], deny_out=[ALL_TRAFFIC], rules=RULES))
    path = f"/refused-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}")[0] != 0
    assert fetch(sbx, f"http://{ALLOWED}{path}")[0] != 0
    assert _seen(world, path) == []


def test_rules_keyed_by_an_address_or_a_cidr(world, make_sandbox):
    """E2B's rules may be keyed by an IP or CIDR: every connection dialled inside it gets the
    headers, whatever name it carries; the narrowest key wins, and a name's own rule before any."""
    rules = {ALLOWED: [{"transform": {"headers": {"X-Rule": "address"}}}],
             "198.18.0.0/30": [{"transform": {"headers": {"X-Rule": "cidr"}}}],
             "other.test": [{"transform": {"headers": {"X-Rule": "name"}}}]}
    sbx = make_sandbox(network=network(allow_out=["198.18.0.0/29", "allowed.test", "other.test"],
                                       deny_out=[ALL_TRAFFIC], rules=rules))
    path = f"/by-address-{uuid.uuid4().hex}"
    for url, expected in ((f"http://{ALLOWED}{path}/1", "address"), (f"http://{OTHER}{path}/2", "cidr"),
                          (f"http://other.test{path}/3", "name"), (f"http://{NEIGHBOUR}{path}/4", None)):
        assert fetch(sbx, url)[0] == 0, url
        (seen,) = _seen(world, path + url[-2:])
        assert seen["headers"].get("X-Rule") == expected, url
    # HTTPS to a name no rule names, at an address a rule holds: terminated and verified for the name
    code, out = _curl(sbx, f"https://allowed.test{path}/5", "-v")
    assert code == 0 and "sandlot egress CA" in out, out
    assert _seen(world, f"{path}/5")[0]["headers"]["X-Rule"] == "address"
    # no name at all: verified for the address, which the world's certificate does not name: closed
    for flags in ((), ("-k",)):
        assert _curl(sbx, f"https://{ALLOWED}{path}/6", *flags)[0] != 0
    assert _seen(world, f"{path}/6") == []


def test_an_address_rule_grants_no_access(world, make_sandbox):
    rules = {OTHER: [{"transform": {"headers": {"X-Rule": "address"}}}]}
    sbx = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC], rules=rules))
    path = f"/address-refused-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://{OTHER}{path}")[0] != 0
    assert _seen(world, path) == []
    assert fetch(sbx, f"http://allowed.test{path}-ok")[0] == 0
    assert "X-Rule" not in _seen(world, f"{path}-ok")[0]["headers"]


@pytest.mark.parametrize("name", ["metadata.test", "host.test", "loop.test"])
def test_a_rule_name_rebound_to_a_closed_address_stays_closed(world, make_sandbox, name):
    """DNS rebinding: the proxy dials from the host, so a rule's name that resolves to metadata, the
    host itself or loopback must not make it dial there (the address is never pinned for it)."""
    rules = {name: RULES["allowed.test"]}
    sbx = make_sandbox(network=network(allow_out=[name], deny_out=[ALL_TRAFFIC], rules=rules))
    path = f"/rebound-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://{name}{path}")[0] != 0
    assert _seen(world, path) == []


def test_live_update_applies_rules(world, make_sandbox):
    sbx = make_sandbox(network=_allow_list())
    path = f"/live-{uuid.uuid4().hex}"
    assert fetch(sbx, f"http://allowed.test{path}")[0] == 0
    assert "Authorization" not in _seen(world, path)[0]["headers"]
    sbx.update_network({"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "dns_servers": [world.dns],
                        "rules": RULES})
    code, out = _curl(sbx, f"https://allowed.test{path}-tls")
    assert code == 0, out
    assert _seen(world, f"{path}-tls")[0]["headers"]["Authorization"] == SECRET
    sbx.update_network({"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "dns_servers": [world.dns]})
    assert fetch(sbx, f"http://allowed.test{path}-after")[0] == 0
    assert "Authorization" not in _seen(world, f"{path}-after")[0]["headers"]


@pytest.mark.parametrize("rules, status, word", [
    ({"allowed.test": [{"transform": {"headers": {"Host": "x"}}}]}, 400, "Host"),
    ({"allowed.test": [{"transform": {"headers": {"X-A": "a\r\nX-B: b"}}}]}, 400, "CR"),
    ({"allowed.test": [{"transform": {"headers": {"bad name": "x"}}}]}, 400, "header name"),
    ({"2001:db8::1": [{"transform": {"headers": {"X-A": "a"}}}]}, 400, "IPv6"),
    ({"10.0.0.0/33": [{"transform": {"headers": {"X-A": "a"}}}]}, 400, "10.0.0.0/33"),
    ({"*": [{"transform": {"headers": {"X-A": "a"}}}]}, 400, "'*'"),
    ({"allowed.test": {"transform": {}}}, 400, "list"),
    ({"allowed.test": [{"transform": {"body": "x"}}]}, 400, "headers"),
    ({"allowed.test": [{"transform": {"headers": {"Authorization": "Bearer ${e2b.identity.tokens.aws}"}}}]},
     400, "'aws'"),  # a workload identity token the sandbox does not register (test_egress_identity.py)
])
def test_bad_rules_are_refused_clearly(api, rules, status, word):
    body = {"templateID": "base", "network": {"allowOut": ["allowed.test"], "denyOut": [ALL_TRAFFIC], "rules": rules}}
    r = api.post("/sandboxes", json=body)
    assert r.status_code == status, r.text
    assert word in r.json()["message"]


def test_rules_without_a_network_are_refused(api):
    r = api.post("/sandboxes", json={"templateID": "base", "network": {"rules": RULES}})
    assert r.status_code == 400 and "allowOut" in r.json()["message"]


# ---- HTTP/2 ----------------------------------------------------------------------------------

# An h2c client that sends its preface only after the server's SETTINGS have reached the proxy
# (as a slow or loaded client does): HPACK literals without indexing, one GET, then it reads the
# answer until the server's DATA ends the stream.
_SLOW_H2C = """
import socket, struct, sys, time
path = sys.argv[1]
def literal(name, value):
    name, value = name.encode(), value.encode()
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value
block = b"".join(literal(n, v) for n, v in ((":method", "GET"), (":scheme", "http"), (":path", path),
                                            (":authority", "h2.test")))
s = socket.create_connection(("h2.test", 80), timeout=10)
time.sleep(0.5)
s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes(9)[:3] + b"\\x04" + bytes(5)
          + len(block).to_bytes(3, "big") + b"\\x01\\x05" + (1).to_bytes(4, "big") + block)
got = b""
while b"h2 world" not in got:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
print("answered" if b"h2 world h2.test" in got else "no answer: %r" % got[:200])
"""


def test_h2c_from_a_client_slower_than_the_servers_settings_gets_the_headers(world, h2_world, make_sandbox):
    """An HTTP/2 server sends its SETTINGS as soon as the proxy connects (RFC 9113 3.4). If they came
    before the sandbox's preface, the proxy took the server for one that speaks first and relayed
    the connection as it was: no headers (seen in CI under load)."""
    sbx = make_sandbox(network=_allow_list(rules=H2_RULES))
    sbx.files.write("/tmp/slow_h2c.py", _SLOW_H2C)
    path = f"/slow-h2c-{uuid.uuid4().hex}"
    code, out = sh(sbx, f"python3 /tmp/slow_h2c.py {path}")
    assert code == 0 and out.strip() == "answered", out
    (seen,) = _h2_seen(h2_world, path)
    assert seen["protocol"] == "h2c" and _values(seen, "authorization") == [H2_SECRET]


def _h2_seen(log: Path, path: str) -> list[dict]:
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["path"] == path]


def _values(request: dict, name: str) -> list[str]:
    return [v for n, v in request["headers"] if n == name]


def _pattern_sha256(n: int) -> str:
    block = bytes(range(256)) * 64  # h2_server.py's /bytes/N
    return hashlib.sha256((block * (n // len(block) + 1))[:n]).hexdigest()


def test_http2_is_relayed_with_the_rule_headers(world, h2_world, make_sandbox):
    sbx = make_sandbox(network=_allow_list(rules=H2_RULES))
    path = f"/h2-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"https://h2.test{path}", "--http2", "-v", "-H 'Authorization: mine'")
    assert code == 0, out
    assert "ALPN: server accepted h2" in out and "using HTTP/2" in out and "< HTTP/2 200" in out, out
    assert "sandlot egress CA" in out  # the proxy's leaf, verified inside
    assert out.startswith("h2 world h2.test\n"), out  # stdout, then curl -v
    (seen,) = _h2_seen(h2_world, path)
    assert seen["protocol"] == "h2"
    assert _values(seen, "authorization") == [H2_SECRET]  # the sandbox's own value replaced, not added to
    assert _values(seen, "x-team") == ["green"]
    assert H2_SECRET.split()[1] not in out


def test_http2_to_an_address_rule_gets_its_headers_on_every_stream(world, h2_world, make_sandbox):
    """A rule keyed by the address: over h2 every request gets its headers, whatever its :authority
    (the address is what the rule names), with a workload identity token minted into them."""
    from network_support import H2
    rules = {H2: [{"transform": {"headers": {"Authorization": "Bearer ${e2b.identity.tokens.api}"}}}]}
    sbx = make_sandbox(network=_allow_list(rules=rules),
                       iam={"tokens": {"api": {"audience": "h2.test", "token_type": "JWT-SVID"}}})
    path = f"/h2-address-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"https://h2.test{path}/1 https://h2.test{path}/2", "--http2", "-v")
    assert code == 0 and "using HTTP/2" in out and "sandlot egress CA" in out, out
    tokens = [_values(r, "authorization") for p in ("/1", "/2") for r in _h2_seen(h2_world, path + p)]
    assert len(tokens) == 2 and all(len(t) == 1 and t[0].startswith("Bearer ey") for t in tokens), tokens
    assert tokens[0][0].split()[1] not in out


def test_http2_streams_are_concurrent_and_large_bodies_pass_whole(world, h2_world, make_sandbox):
    """Six streams open at once on one connection (the world answers /together/6/... only when
    all six are open), and 8 MB up and 9 MB down through 256 KiB windows (flow control)."""
    sbx = make_sandbox(network=_allow_list(rules=H2_RULES))
    group = uuid.uuid4().hex
    urls = " ".join([f"https://h2.test/together/6/{group}"] * 6)
    code, out = _curl(sbx, urls, "--http2", "-Z", "-v")
    assert code == 0, out
    assert out.count("together 6") == 6, out
    assert out.count("Multiplexed connection found") == 5, out  # one connection, six streams
    seen = _h2_seen(h2_world, f"/together/6/{group}")
    assert len(seen) == 6 and len({tuple(r["client"]) for r in seen}) == 1
    assert all(_values(r, "authorization") == [H2_SECRET] for r in seen)

    code, out = sh(sbx, "head -c 8000000 /dev/urandom > /tmp/big && "
                        "curl -sS --http2 -m 60 --data-binary @/tmp/big https://h2.test/echo -o /tmp/back && "
                        "sha256sum /tmp/big /tmp/back && curl -sS --http2 -m 60 https://h2.test/bytes/9000000 | "
                        "sha256sum", timeout=90)
    assert code == 0, out
    sent, back, down = (line.split()[0] for line in out.splitlines())
    assert sent == back
    assert down == _pattern_sha256(9000000)
    (echo,) = [r for r in _h2_seen(h2_world, "/echo") if r["body_sha256"] == sent]
    assert echo["body_len"] == 8000000 and _values(echo, "authorization") == [H2_SECRET]


def test_http2_trailers_resets_and_other_authorities(world, h2_world, make_sandbox):
    """On one h2 connection to h2.test: a response's trailers arrive; a request whose :authority is
    another rule's name gets neither rule's headers (the connection was verified for h2.test only);
    a stream reset halfway through a download leaves the connection working."""
    import h2
    import hpack
    import hyperframe

    sbx = make_sandbox(network=_allow_list(rules=H2_RULES))
    for mod in (h2, hpack, hyperframe):
        root = Path(mod.__file__).parent
        for f in root.rglob("*.py"):
            sbx.files.write(f"/tmp/h2lib/{mod.__name__}/{f.relative_to(root)}", f.read_text())
    sbx.files.write("/tmp/h2lib/h2_client.py", (HERE / "h2_client.py").read_text())
    tag = uuid.uuid4().hex
    code, out = sh(sbx, f"PYTHONPATH=/tmp/h2lib python3 /tmp/h2lib/h2_client.py h2.test allowed.test {tag}",
                   timeout=60)
    assert code == 0, out
    got = json.loads(out)
    assert got["alpn"] == "h2"
    assert got["trailers"]["trailers"] == [["x-trailer", f"done /trailers-{tag}"], ["grpc-status", "0"]]
    (trailers,) = _h2_seen(h2_world, f"/trailers-{tag}")
    assert _values(trailers, "authorization") == [H2_SECRET]
    (other,) = _h2_seen(h2_world, f"/other-{tag}")
    assert other["authority"] == "allowed.test"
    assert _values(other, "authorization") == ["from-the-sandbox"] and _values(other, "x-team") == []
    assert got["reset"]["ended"] == "reset" and got["reset"]["len"] < 20000000
    assert got["after_reset"]["len"] == 3000000
    assert got["after_reset"]["sha256"] == _pattern_sha256(3000000)
    assert H2_SECRET.split()[1] not in out


def test_http2_falls_back_to_http1_when_the_upstream_has_no_h2(world, h2_world, make_sandbox):
    """allowed.test's HTTPS server speaks HTTP/1.1 only: a sandbox offering h2 is offered only
    HTTP/1.1 by the proxy, and its requests still get the headers."""
    sbx = make_sandbox(network=_allow_list(rules=H2_RULES))
    path = f"/h1-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"https://allowed.test{path}", "--http2", "-v")
    assert code == 0, out
    assert "ALPN: offers h2" in out and "ALPN: server accepted http/1.1" in out and "< HTTP/1.1 200" in out, out
    (seen,) = _seen(world, path)
    assert seen["headers"]["Authorization"] == SECRET


def test_h2c_with_prior_knowledge_gets_the_headers(world, h2_world, make_sandbox):
    """Cleartext HTTP/2 (cleartext gRPC's way): a request whose :authority is a rule's name gets its
    headers, like plain HTTP/1; one for another name gets none. (One request per connection: the
    template's curl 7.88 fails a second h2c request on a reused connection, to any server.)"""
    sbx = make_sandbox(network=_allow_list(rules=H2_RULES))
    path = f"/h2c-{uuid.uuid4().hex}"
    code, out = _curl(sbx, f"http://h2.test{path}", "--http2-prior-knowledge", "-v")
    assert code == 0, out
    assert out.startswith("h2 world h2.test\n") and "< HTTP/2 200" in out, out
    code, out = _curl(sbx, f"http://h2.test{path}-elsewhere", "--http2-prior-knowledge", "-H 'Host: elsewhere.test'")
    assert code == 0 and out == "h2 world elsewhere.test\n", out
    (seen,) = _h2_seen(h2_world, path)
    assert seen["protocol"] == "h2c" and _values(seen, "authorization") == [H2_SECRET]
    (elsewhere,) = _h2_seen(h2_world, f"{path}-elsewhere")
    assert _values(elsewhere, "authorization") == []
