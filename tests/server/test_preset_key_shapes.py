"""SANDLOT_API_KEY takes any string that can be an HTTP header value, not only E2B-shaped keys:
the native SDK, the official e2b SDK and raw HTTP all get in with it."""

from __future__ import annotations

import httpx
import pytest

from sandlot import AuthenticationError, Sandbox
from support import leftovers, start_server

# Spaces, ':', '/', '=', ';', '%', quotes, ',' and '+': visible ASCII and spaces are all a header
# value may hold (RFC 9110); leading and trailing spaces would be stripped on the way.
ODD_KEY = 'my key:with/odd=chars;100%20,"q"+~'


@pytest.fixture(scope="module")
def odd_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("odd-key") / "home", pool_size=0, api_key=ODD_KEY)
    yield srv
    srv.stop()
    assert not leftovers(srv.home)


def test_raw_http_with_an_odd_key(odd_server):
    url = f"{odd_server.url}/v2/sandboxes"
    assert httpx.get(url, headers={"X-API-KEY": ODD_KEY}, timeout=30).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {ODD_KEY}"}, timeout=30).status_code == 200
    for wrong in (ODD_KEY[:-1], ODD_KEY.upper(), "my key", "e2b_" + "5a" * 20):
        r = httpx.get(url, headers={"X-API-KEY": wrong}, timeout=30)
        assert r.status_code == 401 and r.json() == {"code": 401, "message": "invalid API key"}, wrong


def test_native_sdk_with_an_odd_key(odd_server):
    conn = {"api_url": odd_server.url, "api_key": ODD_KEY}
    with Sandbox.create(timeout=60, metadata={"k": "odd"}, **conn) as sbx:
        assert sbx.commands.run("echo hi").stdout == "hi\n"
        assert [i.sandbox_id for i in Sandbox.list(metadata={"k": "odd"}, **conn)] == [sbx.sandbox_id]
    with pytest.raises(AuthenticationError):
        Sandbox.list(api_url=odd_server.url, api_key=ODD_KEY + "x").next_items()


def test_e2b_sdk_with_an_odd_key(odd_server, monkeypatch):
    """e2b 2.63.0 checks no key shape on the client side: it sends the key as it is."""
    from e2b import AuthenticationException
    from e2b import Sandbox as E2BSandbox

    for key, value in {**odd_server.env(), "E2B_API_KEY": ODD_KEY}.items():
        monkeypatch.setenv(key, value)
    sbx = E2BSandbox.create(timeout=60)
    try:
        assert sbx.commands.run("echo hi").stdout == "hi\n"
        assert sbx.files.write("/home/user/a.txt", "x").path == "/home/user/a.txt"
        assert sbx.sandbox_id in {i.sandbox_id for i in E2BSandbox.list().next_items()}
        assert sbx.get_info().sandbox_id == sbx.sandbox_id
    finally:
        assert sbx.kill() is True
    with pytest.raises(AuthenticationException):
        E2BSandbox.list(api_key=ODD_KEY[:-1]).next_items()
