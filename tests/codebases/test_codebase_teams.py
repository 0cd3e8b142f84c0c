"""Codebases are team-scoped: another team's key gets, on every codebase route, the very 404 an
unknown id gets (no existence oracle) and changes nothing; lists hold the caller's team's only; a
sandbox cannot be made on another team's codebase; a sandbox's sessions, permissions and
workspace routes are its team's alone. Each refusal is in the refused team's audit trail."""

from __future__ import annotations

import io
import tarfile

import httpx
import pytest
from support import team_key

from sandlot import Codebase, NotFound, Sandbox

UNKNOWN = "cb" + "0" * 16


@pytest.fixture(scope="module")
def red(server) -> str:
    return team_key(server)[2]


@pytest.fixture(scope="module")
def blue(server) -> str:
    return team_key(server)[2]


@pytest.fixture(scope="module")
def red_codebase(server, red):
    cb = Codebase.create("red-secrets", api_url=server.url, api_key=red)
    cb.upload_file("/key.txt", "red's")
    yield cb
    cb.delete()
    cb.close()


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("planted.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    return buf.getvalue()


def codebase_routes(cid: str) -> list[tuple[str, str, dict]]:
    one = f"/codebases/{cid}"
    return [("GET", one, {}), ("DELETE", one, {}), ("GET", one + "/files", {"params": {"path": "/key.txt"}}),
            ("PUT", one + "/files", {"params": {"path": "/planted.txt"}, "content": b"bad"}),
            ("POST", one + "/tar", {"content": _tar()}), ("GET", one + "/tar", {}), ("GET", one + "/list", {})]


def test_another_team_gets_the_answer_of_an_unknown_codebase(server, red, blue, red_codebase):
    cid = red_codebase.id
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": blue}, timeout=60) as http:
        for method, path, kwargs in codebase_routes(cid):
            foreign = http.request(method, path, **kwargs)
            unknown = http.request(method, path.replace(cid, UNKNOWN), **kwargs)
            assert foreign.status_code == unknown.status_code == 404, (method, path, foreign.text, unknown.text)
            assert foreign.json() == {"code": 404, "message": f'codebase "{cid}" not found'}
            assert unknown.json() == {"code": 404, "message": f'codebase "{UNKNOWN}" not found'}
        assert cid not in {c["codebaseID"] for c in http.get("/codebases").json()}
        # nothing changed: the codebase is whole, at the version it had
        made = http.post("/v2/sandboxes", json={"templateID": "base", "workspace": {"codebase": cid}})
        assert made.status_code == 404 and made.json()["message"] == f'codebase "{cid}" not found'
        assert http.get("/v2/sandboxes").json() == []  # no sandbox was made for it
    assert [c.id for c in Codebase.list(api_url=server.url, api_key=red)] == [cid]
    assert red_codebase.refresh().version == 1 and red_codebase.read_file("/key.txt") == b"red's"
    with pytest.raises(NotFound):
        Codebase.get(cid, api_url=server.url, api_key=blue)
    with pytest.raises(NotFound):
        Sandbox.create(codebase=cid, api_url=server.url, api_key=blue)
    # the refusals are in blue's trail, as reads of something not found; red's holds its own acts
    with httpx.Client(base_url=server.url, timeout=60) as http:
        blue_rows = http.get("/audit", params={"action": "codebase."}, headers={"X-API-KEY": blue}).json()["entries"]
        red_rows = http.get("/audit", params={"action": "codebase."}, headers={"X-API-KEY": red}).json()["entries"]
    refused = {(r["action"], r["outcome"]) for r in blue_rows if r["detail"].get("codebase") != UNKNOWN}
    assert ("codebase.get", "not_found") in refused and ("codebase.upload", "not_found") in refused
    assert {("codebase.create", cid), ("codebase.write", cid)} <= {(r["action"], r["detail"].get("codebase"))
                                                                  for r in red_rows}
    assert all(r["outcome"] == "ok" for r in red_rows)


def test_a_sandbox_s_sessions_and_workspace_are_its_team_s(server, red, blue, red_codebase):
    with Sandbox.create(codebase=red_codebase, preset="read-only", api_url=server.url, api_key=red) as sandbox:
        session = sandbox.session(id="mine")
        base = f"/sandboxes/{sandbox.sandbox_id}"
        routes = [("GET", base + "/sessions", None), ("POST", base + "/sessions", {}),
                  ("GET", base + "/sessions/mine", None), ("DELETE", base + "/sessions/mine", None),
                  ("POST", base + "/sessions/mine/exec", {"cmd": "touch /tmp/pwned"}),
                  ("GET", base + "/permissions", None), ("PUT", base + "/permissions", {"preset": "full-access"}),
                  ("POST", base + "/workspace/commit", None), ("POST", base + "/workspace/discard", None)]
        with httpx.Client(base_url=server.url, headers={"X-API-KEY": blue}, timeout=60) as http:
            for method, path, body in routes:
                r = http.request(method, path, json=body)
                assert r.status_code == 404, (method, path, r.text)
                assert r.json() == {"code": 404, "message": f'sandbox "{sandbox.sandbox_id}" not found'}
        assert session.exec("test -e /tmp/pwned || echo untouched").stdout == "untouched\n"
        assert [r.permission for r in sandbox.get_permissions()] == ["read"]
        assert [s.id for s in sandbox.list_sessions()] == ["mine"]
