"""Control-plane error answers (docs/e2b.md §2.3, §2.10): hostile and broken requests get a JSON
`{"code": int, "message": str}` with the right 4xx status, never a 500, and change nothing."""

from __future__ import annotations

import http.client
from urllib.parse import quote

import httpx
import pytest
from e2b import (
    AuthenticationException,
    NotFoundException,
    Sandbox,
    SandboxException,
    SandboxQuery,
)
from e2b_support import assert_json_error
from support import unique

UNKNOWN = "inosuchsandbox00000"
WRONG_KEY = "e2b_" + "0" * 40


@pytest.fixture
def anonymous(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def count_sandboxes(api, tag: str) -> int:
    r = api.get("/v2/sandboxes", params={"metadata": f"tag={tag}"})
    assert r.status_code == 200, r.text
    return len(r.json())


ENDPOINTS = [
    ("GET", "/v2/sandboxes", None),
    ("GET", "/sandboxes", None),
    ("POST", "/v2/sandboxes", {"templateID": "base"}),
    ("POST", "/sandboxes", {"templateID": "base"}),
    ("GET", f"/sandboxes/{UNKNOWN}", None),
    ("DELETE", f"/sandboxes/{UNKNOWN}", None),
    ("POST", f"/sandboxes/{UNKNOWN}/timeout", {"timeout": 10}),
    ("POST", f"/v2/sandboxes/{UNKNOWN}/connect", {"timeout": 10}),
    ("POST", f"/sandboxes/{UNKNOWN}/connect", {"timeout": 10}),
    ("GET", f"/sandboxes/{UNKNOWN}/metrics", None),
    ("POST", f"/sandboxes/{UNKNOWN}/pause", None),
]


@pytest.mark.parametrize("method,path,body", ENDPOINTS)
def test_missing_or_wrong_api_key_is_401(anonymous, method, path, body):
    for headers in ({}, {"X-API-KEY": WRONG_KEY}, {"X-API-KEY": ""}, {"X-API-KEY": "e2b_"},
                    {"Authorization": f"Bearer {WRONG_KEY}"}, {"X-API-KEY": "' OR 1=1 --"}):
        r = anonymous.request(method, path, json=body, headers=headers)
        body_json = assert_json_error(r, 401)
        assert body_json["code"] == 401


def test_wrong_key_creates_nothing(anonymous, api):
    tag = unique()
    r = anonymous.post("/v2/sandboxes", json={"templateID": "base", "metadata": {"tag": tag}},
                       headers={"X-API-KEY": WRONG_KEY})
    assert_json_error(r, 401)
    assert count_sandboxes(api, tag) == 0


def test_sdk_with_a_wrong_key(sdk_env):
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key=WRONG_KEY, timeout=30)
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key=WRONG_KEY).next_items()


@pytest.mark.parametrize("method,path,body", [e for e in ENDPOINTS if UNKNOWN in e[1]])
def test_unknown_sandbox_is_404(api, method, path, body):
    r = api.request(method, path, json=body)
    assert_json_error(r, 404)


def test_unknown_sandbox_through_the_sdk(sdk_env):
    with pytest.raises(NotFoundException):
        Sandbox.get_info(UNKNOWN)
    with pytest.raises(NotFoundException):
        Sandbox.set_timeout(UNKNOWN, 30)
    with pytest.raises(NotFoundException):
        Sandbox.get_metrics(UNKNOWN)
    assert Sandbox.kill(UNKNOWN) is False


def literal_request(server, method: str, path: str) -> httpx.Response:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, quote(path, safe="/%"), headers={"X-API-KEY": server.api_key})
        answer = conn.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        conn.close()


@pytest.mark.parametrize("sandbox_id", ["../../etc/passwd", "%2e%2e%2fetc", "a" * 500, "i'; DROP TABLE sandboxes; --",
                                        "ünïcode", "..", "%00"])
def test_hostile_sandbox_ids_are_404(server, sandbox_id):
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/metrics")):
        # sent as written: httpx would resolve ".." itself (to /metrics, a route of its own)
        r = literal_request(server, method, f"/sandboxes/{sandbox_id}{suffix}")
        assert 400 <= r.status_code < 500, (method, sandbox_id, r.status_code, r.text[:200])
        assert_json_error(r, r.status_code)


@pytest.mark.parametrize("path", ["/v2/sandboxes", "/sandboxes"])
def test_invalid_create_bodies_are_400(api, path):
    tag = unique()
    cases = {
        "not json": b"{not json",
        "truncated json": b'{"templateID": "base"',
        "json array": b"[]",
        "json string": b'"base"',
        "json null": b"null",
        "timeout is a string": b'{"templateID": "base", "timeout": "soon"}',
        "timeout is a float string": b'{"templateID": "base", "timeout": "1e9"}',
        "metadata not an object": b'{"templateID": "base", "metadata": "x"}',
        "metadata value not a string": b'{"templateID": "base", "metadata": {"a": {"b": 1}}}',
        "envVars not an object": b'{"templateID": "base", "envVars": ["A=1"]}',
        "templateID not a string": b'{"templateID": {"x": 1}}',
        "invalid utf-8": b'{"templateID": "\xff\xfe"}',
    }
    for name, raw in cases.items():
        r = api.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (name, r.status_code, r.text[:200])
        assert_json_error(r, 400)
    assert count_sandboxes(api, tag) == 0


@pytest.mark.parametrize("timeout", [-1, -300, 0, 10**12, 2**63])
def test_out_of_range_create_timeouts_are_400(api, timeout):
    tag = unique()
    r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": timeout, "metadata": {"tag": tag}})
    assert_json_error(r, 400)
    assert count_sandboxes(api, tag) == 0


def test_negative_timeouts_on_running_sandboxes_are_400(api, sandbox):
    sid = sandbox.sandbox_id
    end = api.get(f"/sandboxes/{sid}").json()["endAt"]
    for path in (f"/sandboxes/{sid}/timeout", f"/v2/sandboxes/{sid}/connect", f"/sandboxes/{sid}/connect"):
        for body in ({"timeout": -5}, {"timeout": "x"}, {"timeout": 10**12}):
            r = api.post(path, json=body)
            assert_json_error(r, 400)
        r = api.post(path, content=b"{broken", headers={"Content-Type": "application/json"})
        assert_json_error(r, 400)
    r = api.post(f"/sandboxes/{sid}/timeout", json={})
    assert_json_error(r, 400)
    assert api.get(f"/sandboxes/{sid}").json()["endAt"] == end, "a refused request changed the timeout"
    assert sandbox.is_running()


def test_bad_timeouts_leave_a_paused_sandbox_paused(api, make_sandbox):
    """resume and connect check the timeout before resuming: a refused one changes nothing (an end
    time too far to show made every GET and list a 500; a negative one had the sandbox reaped)."""
    sbx = make_sandbox()
    sid = sbx.sandbox_id
    sbx.files.write("/home/user/kept.txt", "still here")
    assert api.post(f"/sandboxes/{sid}/pause").status_code == 204
    before = api.get(f"/sandboxes/{sid}").json()
    bad = ({"timeout": -5}, {"timeout": 0}, {"timeout": 10**12}, {"timeout": 2**63}, {"timeout": 1.5},
           {"timeout": "x"})
    for body in bad:
        assert_json_error(api.post(f"/sandboxes/{sid}/resume", json=body), 400)
    for path in (f"/v2/sandboxes/{sid}/connect", f"/sandboxes/{sid}/connect"):
        for body in bad[2:]:  # connect accepts 0 and less: it only ever extends
            assert_json_error(api.post(path, json=body), 400)
        assert_json_error(api.post(path, json={"timeout": -5}), 400)
    r = api.get(f"/sandboxes/{sid}")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "paused" and r.json()["endAt"] == before["endAt"], r.json()
    listed = api.get("/v2/sandboxes", params={"state": "paused"})
    assert listed.status_code == 200 and sid in {s["sandboxID"] for s in listed.json()}, listed.text
    r = api.post(f"/sandboxes/{sid}/resume", json={"timeout": 120})
    assert r.status_code == 201, r.text
    assert api.get(f"/sandboxes/{sid}").json()["state"] == "running"
    assert sbx.commands.run("cat /home/user/kept.txt").stdout == "still here"


def test_negative_timeout_through_the_sdk(sandbox):
    with pytest.raises(SandboxException):
        sandbox.set_timeout(-1)
    with pytest.raises(SandboxException):
        Sandbox.create(timeout=-5)


@pytest.mark.parametrize("template", ["no-such-template", "../../../etc", "/etc/passwd", "base/../base2",
                                      "a" * 300, "base\x00", "  ", "ünïcode"])
def test_unknown_template_is_404_or_400(api, template):
    tag = unique()
    r = api.post("/v2/sandboxes", json={"templateID": template, "metadata": {"tag": tag}})
    assert r.status_code in (400, 404), (template[:30], r.status_code, r.text[:200])
    assert_json_error(r, r.status_code)
    assert count_sandboxes(api, tag) == 0


def test_unknown_template_through_the_sdk(sdk_env):
    with pytest.raises(SandboxException) as info:
        Sandbox.create(template="no-such-template", timeout=30)
    assert "no-such-template" in str(info.value) or "not found" in str(info.value).lower()


def test_bad_list_parameters_are_400(api):
    for params in ({"limit": "0"}, {"limit": "-1"}, {"limit": "abc"}, {"limit": "101"},
                   {"state": "bogus"}, {"state": "running,exploded"}, {"order": "sideways"},
                   {"nextToken": "garbage!!"}, {"nextToken": "W10="}, {"startedAfter": "yesterday"}):
        r = api.get("/v2/sandboxes", params=params)
        assert_json_error(r, 400)


def test_bad_list_query_through_the_sdk(sdk_env):
    with pytest.raises(SandboxException):
        Sandbox.list(query=SandboxQuery(), limit=2, next_token="not-a-token").next_items()


def test_unknown_routes_and_methods_are_json(api):
    assert_json_error(api.get("/v2/nothing-here"), 404)
    assert_json_error(api.put(f"/sandboxes/{UNKNOWN}"), (404, 405))
