"""Ports in: the control plane's proxy to a port in a sandbox, reached the way E2B users reach it,
through the official SDK's `get_host(port)` (here `8000-<id>.localhost`, which nss-myhostname
resolves to loopback) at the server's port, or by E2B's routing headers."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from network_support import HERE, sh
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from support import access_token, wait_until

PORT = 8000


def _serve(sbx, port: int = PORT, bind: str = "0.0.0.0") -> None:
    """Start tests/network/sandbox_server.py in the sandbox and wait until it listens."""
    sbx.files.write("/tmp/sandbox_server.py", (HERE / "sandbox_server.py").read_text())
    sbx.commands.run(f"python3 /tmp/sandbox_server.py {port} {bind}", background=True)
    code, out = sh(sbx, f"for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:{port}/ && exit 0; "
                        "sleep 0.05; done; exit 1")
    assert code == 0, out


def _url(server, sbx, port: int = PORT, path: str = "/") -> str:
    host = sbx.get_host(port)  # E2B_DOMAIN=localhost: "8000-<id>.localhost"
    assert host == f"{port}-{sbx.sandbox_id}.localhost"
    return f"http://{host}:{server.url.rsplit(':', 1)[1]}{path}"


def test_localhost_names_resolve_to_loopback():
    # what the install script sets up (libnss-myhostname): get_host's names work on this machine
    assert socket.gethostbyname("8000-abc.localhost") == "127.0.0.1"


def test_a_dev_server_through_get_host(make_sandbox, sdk_env):
    sbx = make_sandbox()  # no network at all: still reachable in, as on E2B
    sbx.commands.run(f"cd /tmp && python3 -m http.server {PORT}", background=True)
    url = _url(sdk_env, sbx)
    for _ in range(100):
        try:
            r = httpx.get(url, timeout=10)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    assert r.status_code == 200 and "Directory listing" in r.text, r.text


def test_streaming_bodies_headers_and_routing_headers(make_sandbox, sdk_env):
    sbx = make_sandbox()
    _serve(sbx)
    url = _url(sdk_env, sbx, path="/stream")
    arrived = []
    with httpx.stream("GET", url, timeout=10) as r:
        for line in r.iter_lines():
            arrived.append(time.monotonic())
    assert len(arrived) == 3 and arrived[2] - arrived[0] > 0.7, arrived  # as they were written
    body = b"x" * 3_000_000
    r = httpx.post(_url(sdk_env, sbx, path="/echo"), content=body, timeout=30)
    assert r.status_code == 200 and r.content == body, (r.text, sdk_env.log.read_text()[-1500:])
    # E2B's routing headers work as well as the host name (E2B_SANDBOX_URL deployments)
    r = httpx.get(f"{sdk_env.url}/headers", headers={"E2b-Sandbox-Id": sbx.sandbox_id,
                                                    "E2b-Sandbox-Port": str(PORT), "X-Api-Key": "not forwarded"})
    seen = {k.lower(): v for k, v in r.json().items()}
    assert "e2b-sandbox-id" not in seen and "x-api-key" not in seen, seen
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_websocket_echo(make_sandbox, sdk_env):
    sbx = make_sandbox()
    _serve(sbx)
    ws_url = _url(sdk_env, sbx, path="/ws").replace("http://", "ws://")
    with ws_connect(ws_url, open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        blob = bytes(range(256)) * 1000
        ws.send(blob)
        assert ws.recv(timeout=10) == blob
        ws.send("close")  # the sandbox's server closes with its own code
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4000


def test_websocket_reaches_only_sandbox_ports(make_sandbox, sdk_env):
    """The listener speaks WebSocket for the proxy; anywhere else a WebSocket is refused (403), with
    or without credentials: the routes' access rules are for HTTP and no route serves WebSocket."""
    from websockets.exceptions import InvalidStatus

    sbx = make_sandbox()
    token = access_token(sdk_env, sbx.sandbox_id)
    ws_base = sdk_env.url.replace("http://", "ws://")
    envd = {"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": "49983", "X-Access-Token": token}
    for path, headers in (("/process.Process/Start", envd), ("/filesystem.Filesystem/Stat", envd),
                          ("/mcp", {"X-API-KEY": sdk_env.api_key}), ("/mcp", {}),
                          ("/sandboxes", {"X-API-KEY": sdk_env.api_key}), ("/nosuch", {})):
        with pytest.raises(InvalidStatus) as refused:
            with ws_connect(ws_base + path, additional_headers=headers, open_timeout=10):
                pass
        assert refused.value.response.status_code == 403, path
    assert sbx.commands.run("echo still here").stdout == "still here\n"


def test_loopback_only_servers_and_closed_ports(make_sandbox, sdk_env):
    sbx = make_sandbox()
    _serve(sbx, port=8001, bind="127.0.0.1")
    assert httpx.get(_url(sdk_env, sbx, port=8001), timeout=10).text == "hello from the sandbox\n"
    r = httpx.get(_url(sdk_env, sbx, port=8002), timeout=10)
    assert r.status_code == 502 and r.json()["message"] == "The sandbox is running but port is not open"
    r = httpx.get(f"http://8000-inosuchsandbox0000000.localhost:{sdk_env.url.rsplit(':', 1)[1]}/", timeout=10)
    assert r.status_code == 502 and r.json()["message"] == "The sandbox was not found"


# A listener in the sandbox answering each request with `reply` (raw bytes), then closing.
_RAW_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
reply = bytes.fromhex(sys.argv[2])
while True:
    c, _ = s.accept(); c.recv(65536); c.sendall(reply); c.close()
"""


def test_hostile_ports_and_framings_are_answered_never_failures(make_sandbox, sdk_env):
    """Ports out of range (from the Host or the routing headers) and a sandbox's answer claiming two
    framings are answered cleanly: before, each was a traceback in the server's log, and the client
    got a Content-Length the body never matched."""
    sbx = make_sandbox()
    base = sdk_env.url
    since = len(sdk_env.log.read_text().splitlines())
    for headers in ({"Host": f"99999-{sbx.sandbox_id}.localhost"}, {"Host": f"0-{sbx.sandbox_id}.localhost"},
                    {"Host": f"65536-{sbx.sandbox_id}.localhost"},
                    {"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": "70000"}):
        r = httpx.get(base + "/", headers=headers, timeout=10)
        assert r.status_code == 400 and "1-65535" in r.json()["message"], (headers, r.text)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    sbx.files.write("/tmp/raw_server.py", _RAW_SERVER)
    sbx.commands.run(f"python3 /tmp/raw_server.py 8100 {reply.hex()}", background=True)

    def answered():  # once it listens
        r = httpx.get(_url(sdk_env, sbx, port=8100), timeout=10)
        return r if r.status_code != 502 else None

    r = wait_until(answered, 10)
    assert r.status_code == 200 and r.content == b"hello", (r.headers, r.content)
    time.sleep(0.5)
    added = "\n".join(sdk_env.log.read_text().splitlines()[since:])
    assert "Traceback" not in added, added


def test_private_traffic_needs_the_token(make_sandbox, sdk_env):
    sbx = make_sandbox(network={"allow_public_traffic": False})
    assert sbx.get_info().network["allow_public_traffic"] is False
    _serve(sbx)
    url = _url(sdk_env, sbx, path="/headers")
    assert httpx.get(url, timeout=10).status_code == 403
    assert httpx.get(url, headers={"E2B-Traffic-Access-Token": "wrong"}, timeout=10).status_code == 403
    r = httpx.get(url, headers={"E2B-Traffic-Access-Token": sbx.traffic_access_token}, timeout=10)
    assert r.status_code == 200
    assert "e2b-traffic-access-token" not in {k.lower() for k in r.json()}  # never forwarded
    with pytest.raises(Exception):
        with ws_connect(_url(sdk_env, sbx, path="/ws").replace("http://", "ws://"), open_timeout=10) as ws:
            ws.recv(timeout=5)


def test_a_request_resumes_a_paused_sandbox_that_asked_for_it(make_sandbox, sdk_env):
    from e2b import SandboxState

    sbx = make_sandbox(lifecycle={"on_timeout": "pause", "auto_resume": True},
                       network={"allow_public_traffic": False})
    _serve(sbx)
    assert sbx.pause() is True
    url = _url(sdk_env, sbx, path="/headers")
    # a request the sandbox would refuse does not wake it
    assert httpx.get(url, timeout=10).status_code == 502
    assert sbx.get_info().state == SandboxState.PAUSED
    r = httpx.get(url, headers={"E2B-Traffic-Access-Token": sbx.traffic_access_token}, timeout=30)
    assert r.status_code == 200, r.text  # its server, frozen with it, answers once it is resumed
    assert sbx.get_info().state == SandboxState.RUNNING


def test_preview_urls_are_signed_expiring_and_revocable(make_sandbox, sdk_env):
    from sandlot import Sandbox as NativeSandbox

    sbx = make_sandbox(network={"allow_public_traffic": False})
    _serve(sbx)
    native = NativeSandbox.connect(sbx.sandbox_id, api_url=sdk_env.url, api_key=sdk_env.api_key)
    url = native.expose_port(PORT, ttl=120)
    assert url.startswith(f"http://{PORT}-{sbx.sandbox_id}-") and native.is_port_exposed(PORT)
    port = sdk_env.url.rsplit(":", 1)[1]
    assert url.endswith(f".localhost:{port}")  # no --domain: the server's own port on localhost
    shared = url + "/"
    assert httpx.get(shared, timeout=10).text == "hello from the sandbox\n"
    assert httpx.get(shared.replace(f"-{sbx.sandbox_id}-", f"-{sbx.sandbox_id}-0"), timeout=10).status_code == 403
    forged = shared.split("-", 2)
    forged[2] = "ffffffff" + forged[2][8:]  # a later expiry: the signature no longer matches
    assert httpx.get("-".join(forged), timeout=10).status_code == 403
    assert httpx.get(shared.replace(f"{PORT}-", "8001-", 1), timeout=10).status_code == 403  # another port
    [exposed] = native.list_exposed_ports()
    assert exposed.port == PORT and exposed.url + "/" == shared and exposed.expires_at.timestamp() > time.time() + 60
    native.unexpose_port(PORT)
    assert httpx.get(shared, timeout=10).status_code == 403
    assert not native.is_port_exposed(PORT)
    short = native.expose_port(PORT, ttl=1) + "/"
    time.sleep(2.1)
    assert httpx.get(short, timeout=10).status_code == 403
    r = httpx.post(f"{sdk_env.url}/sandboxes/{sbx.sandbox_id}/ports/49983/expose", json={},
                   headers={"X-API-KEY": sdk_env.api_key})
    assert r.status_code == 400
    native.close()


def test_mask_request_host(make_sandbox, sdk_env):
    sbx = make_sandbox(network={"mask_request_host": "${PORT}-app.example.test"})
    _serve(sbx)
    seen = {k.lower(): v for k, v in httpx.get(_url(sdk_env, sbx, path="/headers"), timeout=10).json().items()}
    assert seen["host"] == f"{PORT}-app.example.test"


def test_many_concurrent_requests(make_sandbox, sdk_env):
    sbx = make_sandbox()
    _serve(sbx)
    url = _url(sdk_env, sbx, path="/echo")
    failures = []

    def client(i: int) -> None:
        with httpx.Client(timeout=30) as c:
            for j in range(20):
                body = f"{i}-{j}".encode() * 100
                r = c.post(url, content=body)
                if r.content != body:
                    failures.append((i, j, r.status_code))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert json.loads(httpx.get(_url(sdk_env, sbx, path="/headers"), timeout=10).text)


def test_wait_for_port_without_client_polling(make_sandbox, sdk_env):
    from sandlot import Sandbox as NativeSandbox
    from sandlot._exceptions import TimeoutError as SandlotTimeout

    sbx = make_sandbox()
    sbx.files.write("/tmp/sandbox_server.py", (HERE / "sandbox_server.py").read_text())
    sbx.commands.run(f"sleep 1; python3 /tmp/sandbox_server.py {PORT} 127.0.0.1", background=True)
    native = NativeSandbox.connect(sbx.sandbox_id, api_url=sdk_env.url, api_key=sdk_env.api_key)
    try:
        t = time.monotonic()
        native.wait_for_port(PORT, timeout=20)
        assert 0.8 < time.monotonic() - t < 15
        assert httpx.get(_url(sdk_env, sbx), timeout=10).text == "hello from the sandbox\n"
        t = time.monotonic()
        with pytest.raises(SandlotTimeout):
            native.wait_for_port(PORT + 9, timeout=1)
        assert time.monotonic() - t < 5
    finally:
        native.close()


def test_serve_domain_makes_get_host_usable_as_is(tmp_path, monkeypatch):
    """`sandlot serve --domain localhost:PORT` (here SANDLOT_DOMAIN): create answers with it, so
    get_host(port) is a host:port to use as it is; other domains' hosts are not sandbox ports."""
    from e2b import Sandbox
    from support import free_port, start_server

    port = free_port()
    srv = start_server(tmp_path / "home", port=port, pool_size=0,
                       extra_env={"SANDLOT_DOMAIN": f"localhost:{port}", "SANDLOT_POOL_TEMPLATES": ""})
    try:
        for key, value in srv.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("E2B_DOMAIN", "elsewhere.test")  # the server's answer wins
        sbx = Sandbox.create(timeout=120)
        try:
            assert sbx.get_host(PORT) == f"{PORT}-{sbx.sandbox_id}.localhost:{port}"
            _serve(sbx)
            assert httpx.get(f"http://{sbx.get_host(PORT)}/", timeout=10).text == "hello from the sandbox\n"
            r = httpx.get(f"{srv.url}/", headers={"Host": f"{PORT}-{sbx.sandbox_id}.elsewhere.test"}, timeout=10)
            assert r.status_code != 200 or "hello" not in r.text
        finally:
            sbx.kill()
    finally:
        srv.stop()
