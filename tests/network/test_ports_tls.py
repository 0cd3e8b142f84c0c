"""TLS on the listener (server/tls.py): the API, envd's routes and every proxied sandbox port over
https/wss, with a certificate signed by the server's local CA or one the operator gives. Clients
verify against the CA file they were handed (GET /ca.pem, `sandlot ca`); nothing here turns
verification off. Sandbox names are `{port}-{id}.sandlot.localhost:{port}` (`*.localhost` would
be one label under the wildcard, which TLS clients refuse), resolved by nss-myhostname."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from network_support import HERE
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from support import API_KEY, free_port, leftovers, start_server, tracebacks

PORT = 8000


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A server with `--tls local-ca` and `--domain sandlot.localhost:PORT`."""
    home = tmp_path_factory.mktemp("tls") / "home"
    port = free_port()
    srv = start_server(home, port=port, pool_size=0, extra_env={
        "SANDLOT_TLS": "local-ca", "SANDLOT_DOMAIN": f"sandlot.localhost:{port}", "SANDLOT_POOL_TEMPLATES": ""})
    srv.url = f"https://127.0.0.1:{port}"
    srv.ca = home / "ca" / "proxy" / "ca.pem"
    yield srv
    srv.stop()
    assert not leftovers(home)
    assert not tracebacks(srv.log.read_text(errors="replace"))


def _trusting(cafile) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def _sdk(srv, *args: str, env: dict[str, str]) -> dict:
    """tls_sdk_client.py with only `env` for the e2b SDK (and SSL_CERT_FILE: the server's CA)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("E2B_", "SSL_CERT"))}
    proc = subprocess.run([sys.executable, str(HERE / "tls_sdk_client.py"), str(HERE / "sandbox_server.py"), *args],
                          env={**clean, "SSL_CERT_FILE": str(srv.ca), "E2B_API_KEY": srv.api_key, **env},
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:] + srv.log.read_text()[-2000:]
    return json.loads(proc.stdout)


def _kill(srv, sandbox_id: str) -> None:
    httpx.delete(f"{srv.url}/sandboxes/{sandbox_id}", headers={"X-API-KEY": srv.api_key},
                 verify=_trusting(srv.ca), timeout=30)


def test_the_ca_is_handed_out_and_verifies_the_api(tls_server):
    pem = tls_server.ca.read_bytes()
    assert (tls_server.ca.parent / "ca.key").stat().st_mode & 0o077 == 0
    trust = _trusting(tls_server.ca)
    r = httpx.get(f"{tls_server.url}/ca.pem", verify=trust, timeout=10)  # no API key: it is public
    assert r.status_code == 200 and r.content == pem
    out = subprocess.run([sys.executable, "-m", "sandlot.cli.main", "ca", "--home", str(tls_server.home)],
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == pem
    out = subprocess.run([sys.executable, "-m", "sandlot.cli.main", "ca", "--path", "--home", str(tls_server.home)],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == str(tls_server.ca)
    # the API by address and by name; an unverified client is refused, plain HTTP is not served
    for url in (tls_server.url, tls_server.url.replace("127.0.0.1", "localhost"),
                tls_server.url.replace("127.0.0.1", "api.sandlot.localhost")):
        assert httpx.get(f"{url}/_sandlot/health", verify=trust, timeout=10).json()["status"] == "ok"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/_sandlot/health", timeout=10)  # the system's trust store only
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_server.url.replace("https", "http") + "/_sandlot/health", timeout=10)


def test_the_e2b_sdk_and_a_dev_server_over_https(tls_server):
    """The official SDK over TLS (control plane, envd, files) with the URL overrides; then the
    sandbox's server through get_host's name over https: plain, streamed, a large body, the
    proxy's own answers; get_mcp_url() names a host the certificate covers."""
    found = _sdk(tls_server, env={"E2B_API_URL": tls_server.url, "E2B_SANDBOX_URL": tls_server.url,
                                  "E2B_DOMAIN": "elsewhere.test"})
    try:
        sid, port = found["id"], tls_server.url.rsplit(":", 1)[1]
        assert found["echo"] == "over tls\n" and found["file"].startswith('"""A server to run inside')
        assert found["host"] == f"{PORT}-{sid}.sandlot.localhost:{port}"  # the server's domain wins
        trust = _trusting(tls_server.ca)
        base = f"https://{found['host']}"
        assert httpx.get(f"{base}/", verify=trust, timeout=10).text == "hello from the sandbox\n"
        arrived = []
        with httpx.stream("GET", f"{base}/stream", verify=trust, timeout=10) as r:
            for _ in r.iter_lines():
                arrived.append(time.monotonic())
        assert len(arrived) == 3 and arrived[2] - arrived[0] > 0.7, arrived  # as written, not buffered
        body = os.urandom(3_000_000)
        r = httpx.post(f"{base}/echo", content=body, verify=trust, timeout=30)
        assert r.status_code == 200 and r.content == body
        seen = {k.lower(): v for k, v in httpx.get(f"{base}/headers", verify=trust, timeout=10).json().items()}
        assert seen["x-forwarded-proto"] == "https"
        assert found["mcp_url"] == f"https://50005-{sid}.sandlot.localhost:{port}/mcp"
        r = httpx.get(found["mcp_url"], verify=trust, timeout=10)  # verified; nothing listens there
        assert r.status_code == 502 and r.json()["message"] == "The sandbox is running but port is not open"
        # a preview URL is https too
        r = httpx.post(f"{tls_server.url}/sandboxes/{sid}/ports/{PORT}/expose", json={"ttl": 60},
                       headers={"X-API-KEY": tls_server.api_key}, verify=trust, timeout=10)
        url = r.json()["url"]
        assert url.startswith(f"https://{PORT}-{sid}-") and url.endswith(f".sandlot.localhost:{port}")
        assert httpx.get(url + "/", verify=trust, timeout=10).text == "hello from the sandbox\n"
    finally:
        _kill(tls_server, found["id"])


def test_websocket_echo_over_wss(tls_server):
    found = _sdk(tls_server, env={"E2B_API_URL": tls_server.url, "E2B_SANDBOX_URL": tls_server.url})
    try:
        with ws_connect(f"wss://{found['host']}/ws", ssl=_trusting(tls_server.ca), open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            blob = bytes(range(256)) * 1000
            ws.send(blob)
            assert ws.recv(timeout=10) == blob
            ws.send("close")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 4000
        # the sandlot SDK over https, trusting the CA the same way (its own process: SSL_CERT_FILE)
        script = ("import sys; from sandlot import Sandbox; s = Sandbox.connect(sys.argv[1], api_url=sys.argv[2], "
                  "api_key=sys.argv[3]); print(s.commands.run('echo native').stdout, end=''); "
                  "print(s.expose_port(8000, ttl=60))")
        proc = subprocess.run([sys.executable, "-c", script, found["id"], tls_server.url, tls_server.api_key],
                              env={**os.environ, "SSL_CERT_FILE": str(tls_server.ca)}, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        echoed, url = proc.stdout.splitlines()
        assert echoed == "native" and url.startswith("https://")
    finally:
        _kill(tls_server, found["id"])


def test_e2b_own_domain_mode_needs_no_url_overrides(tls_server):
    """With TLS the SDK's own-domain mode works: only E2B_DOMAIN (and the CA to trust), so the
    control plane is https://api.{domain} and envd https://49983-{id}.{domain}."""
    domain = tls_server.url.rsplit(":", 1)[1]
    found = _sdk(tls_server, "kill", env={"E2B_DOMAIN": f"sandlot.localhost:{domain}"})
    assert found["envd_url"] == f"https://49983-{found['id']}.sandlot.localhost:{domain}"
    assert found["echo"] == "over tls\n" and found["killed"] is True


def test_an_idle_keep_alive_client_does_not_hold_up_a_stop(tmp_path):
    """A TLS close waits for the client's close_notify; a pooled keep-alive connection whose client
    never reads would hold a stop for 30 s (and the test harness killed it, leaving its traces)."""
    home = tmp_path / "home"
    port = free_port()
    srv = start_server(home, port=port, pool_size=0, extra_env={
        "SANDLOT_TLS": "local-ca", "SANDLOT_DOMAIN": f"sandlot.localhost:{port}", "SANDLOT_POOL_TEMPLATES": ""})
    client = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=_trusting(home / "ca" / "proxy" / "ca.pem"))
    try:
        assert client.get("/health").status_code < 300  # its connection stays in the pool, unread
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 5
    finally:
        client.close()
    assert "Finished server process" in srv.log.read_text()
    assert not leftovers(home)


def test_a_given_certificate(tmp_path):
    """--tls-cert/--tls-key: a certificate the operator's own CA signed (a LocalCA made here stands
    in for it). The server presents it for the API and for sandbox hosts, and has no CA to hand out."""
    from sandlot.server.certs import LocalCA

    port = free_port()
    theirs = LocalCA(tmp_path / "their-ca", label="an operator's CA")
    chain, key = theirs.leaf("given.localhost", "*.given.localhost", "127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    srv = start_server(tmp_path / "home", port=port, pool_size=0, extra_env={
        "SANDLOT_TLS_CERT": str(tmp_path / "cert.pem"), "SANDLOT_TLS_KEY": str(tmp_path / "key.pem"),
        "SANDLOT_DOMAIN": f"given.localhost:{port}", "SANDLOT_POOL_TEMPLATES": ""})
    try:
        trust = _trusting(theirs.cert_path)
        assert httpx.get(f"https://127.0.0.1:{port}/_sandlot/health", verify=trust, timeout=10).status_code == 200
        r = httpx.get(f"https://127.0.0.1:{port}/ca.pem", verify=trust, timeout=10)
        assert r.status_code == 404 and "given by its operator" in r.json()["message"]
        r = httpx.get(f"https://{PORT}-inosuchsandbox0000000.given.localhost:{port}/", verify=trust, timeout=10)
        assert r.status_code == 502 and r.json()["message"] == "The sandbox was not found"  # the proxy, verified
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(chain.decode().split(
                    "-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
                assert tls.selected_alpn_protocol() in (None, "http/1.1")
        assert not (srv.home / "ca").exists()  # no local CA made
    finally:
        srv.stop()
    log = srv.log.read_text(errors="replace")
    assert not tracebacks(log) and "does not name" not in log


def test_a_given_certificate_without_the_sandbox_hosts_is_named_at_start(tmp_path):
    """One for the API's name only: the server starts (the API over TLS may be all that is wanted)
    and says sandbox hosts will be refused."""
    from sandlot.server.certs import LocalCA

    port = free_port()
    chain, key = LocalCA(tmp_path / "their-ca").leaf("api.given.localhost", "127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    srv = start_server(tmp_path / "home", port=port, pool_size=0, extra_env={
        "SANDLOT_TLS_CERT": str(tmp_path / "cert.pem"), "SANDLOT_TLS_KEY": str(tmp_path / "key.pem"),
        "SANDLOT_DOMAIN": f"given.localhost:{port}", "SANDLOT_POOL_TEMPLATES": ""})
    srv.stop()
    log = " ".join(srv.log.read_text().split())
    assert "does not name *.given.localhost: TLS clients will refuse sandbox hosts" in log, log[-2000:]
    assert "(it names api.given.localhost)" in log


def test_plain_http_stays_the_default(sdk_env):
    r = httpx.get(f"{sdk_env.url}/ca.pem", timeout=10)
    assert sdk_env.url.startswith("http://") and r.status_code == 404 and "TLS is off" in r.json()["message"]
    assert not (sdk_env.home / "ca" / "proxy").exists()  # (ca/egress is the header rules' CA, made at their first use)


def _serve_fails(tmp_path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run([str(sys.prefix) + "/bin/sandlot", "serve", "--home", str(tmp_path / "home"),
                           "--port", str(free_port()), *args],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return " ".join(proc.stderr.split())


def test_bad_tls_settings_stop_the_start_with_a_clear_error(tmp_path):
    from sandlot.server.certs import LocalCA

    ca = LocalCA(tmp_path / "ca")
    chain, key = ca.leaf("a.localhost")
    _, other_key = ca.leaf("b.localhost")
    for name, data in (("cert.pem", chain), ("key.pem", key), ("other-key.pem", other_key),
                       ("junk.pem", b"not a certificate\n")):
        (tmp_path / name).write_bytes(data)
    cert, key_file = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    assert "--tls-cert (SANDLOT_TLS_CERT) needs --tls-key (SANDLOT_TLS_KEY) too" in _serve_fails(
        tmp_path, "--tls-cert", cert)
    assert "--tls-key (SANDLOT_TLS_KEY) needs --tls-cert (SANDLOT_TLS_CERT) too" in _serve_fails(
        tmp_path, env={"SANDLOT_TLS_KEY": key_file})
    missing = str(tmp_path / "missing.pem")
    assert f"--tls-key {missing}: cannot read it: No such file or directory" in _serve_fails(
        tmp_path, "--tls-cert", cert, "--tls-key", missing)
    assert f"--tls-cert {tmp_path}: cannot read it: Is a directory" in _serve_fails(
        tmp_path, "--tls-cert", str(tmp_path), "--tls-key", key_file)
    assert "junk.pem: no PEM certificate in it" in _serve_fails(
        tmp_path, "--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", key_file)
    assert "the key does not belong to the certificate" in _serve_fails(
        tmp_path, "--tls-cert", cert, "--tls-key", str(tmp_path / "other-key.pem"))
    assert "exclude each other" in _serve_fails(tmp_path, "--tls", "local-ca", "--domain", "a.localhost",
                                                "--tls-cert", cert, "--tls-key", key_file)
    assert "needs --domain (SANDLOT_DOMAIN) with two labels or more" in _serve_fails(tmp_path, "--tls", "local-ca")
    assert "'localhost:3000'" in _serve_fails(tmp_path, "--tls", "local-ca", "--domain", "localhost:3000")
    assert "invalid setting --tls" in _serve_fails(tmp_path, "--tls", "on")
    assert not (tmp_path / "home").exists() or not (tmp_path / "home" / "state.db").exists()
