"""API keys of a server started without SANDLOT_API_KEY: the first key, `sandlot keys`, 401s."""

from __future__ import annotations

import hashlib
import re
import subprocess

import httpx
import pytest

from support import server_cmd, start_server

KEY = re.compile(r"e2b_[0-9a-f]{40}")


def _keys(home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*server_cmd(), "keys", *args, "--home", str(home)], capture_output=True, text=True,
                          timeout=60)


def _status(server, key: str | None) -> httpx.Response:
    headers = {"X-API-KEY": key} if key is not None else {}
    return httpx.get(f"{server.url}/v2/sandboxes", headers=headers, timeout=30)


def _assert_401(r: httpx.Response, message: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"code": 401, "message": message}


@pytest.fixture
def keyless_server(tmp_path):
    servers = []

    def start(port=None):
        srv = start_server(tmp_path / "home", port=port, pool_size=0, api_key=None)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def test_first_key_then_create_list_revoke(keyless_server):
    srv = keyless_server()
    printed = KEY.findall(srv.log.read_text())
    assert len(printed) == 1, srv.log.read_text()
    first = printed[0]
    assert _status(srv, first).status_code == 200
    _assert_401(_status(srv, None), "missing API key")
    _assert_401(_status(srv, first[:-1] + "0" if first[-1] != "0" else first[:-1] + "1"), "invalid API key")
    r = httpx.get(f"{srv.url}/v2/sandboxes", headers={"Authorization": f"Bearer {first}"}, timeout=30)
    assert r.status_code == 200

    created = _keys(srv.home, "create", "ci")
    assert created.returncode == 0, created.stderr
    key_id, key = created.stdout.split()
    assert KEY.fullmatch(key) and key != first
    assert _status(srv, key).status_code == 200  # the running server sees keys the CLI adds

    listed = _keys(srv.home, "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "ci" in listed.stdout and "first key" in listed.stdout
    assert key[:8] in listed.stdout and key not in listed.stdout and first not in listed.stdout

    revoked = _keys(srv.home, "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked {key_id}" in revoked.stdout, revoked
    _assert_401(_status(srv, key), "invalid API key")
    assert _status(srv, first).status_code == 200
    again = _keys(srv.home, "revoke", key_id)
    assert again.returncode == 1 and again.stderr == f'error: active key "{key_id}" not found\n', again
    assert key_id in _keys(srv.home, "list").stdout  # revoked keys stay listed, with the time

    # stored hashed: neither key is anywhere in the database files, their digests are
    db = b"".join(p.read_bytes() for p in srv.home.glob("state.db*"))
    for raw in (first, key):
        assert raw.encode() not in db
        assert hashlib.sha256(raw.encode()).hexdigest().encode() in db

    srv.stop()
    before = srv.log.read_text()
    srv2 = keyless_server(port=int(srv.url.rsplit(":", 1)[1]))
    assert KEY.findall(srv2.log.read_text()[len(before):]) == []  # the first key is made only once
    assert _status(srv2, first).status_code == 200
    _assert_401(_status(srv2, key), "invalid API key")
