"""Teams: two teams' keys against one real server, through the official SDK and raw HTTP.

A sandbox is its team's alone: another team's key gets, on every control-plane route, the very 404
an unknown id gets (no existence oracle) and changes nothing; a list holds only the caller's team's
sandboxes and tokens; another team's sandbox traffic credentials open nothing. Snapshots and
volumes likewise: unseen, unreachable, their names a team's own. Quotas answer 429,
which the SDK raises as RateLimitException without retrying. Teams and keys are made with the
`sandlot` CLI on the server's state directory, as an operator would.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from e2b import NotFoundException, RateLimitException, Sandbox
from e2b_support import assert_json_error, envd_headers
from support import kill_quietly, team_key, unique, wait_until

UNAUTHORIZED = "unauthorized access, please provide a valid access token or method signing if supported"


def new_team(server, *quotas: str) -> str:
    """A fresh team with a key; the key."""
    return team_key(server, None, *quotas)[2]


def log_lines_until(server, since: int, last: str) -> list[str]:
    """The server's log lines past its first `since`, once one of them holds `last`."""
    def added():
        lines = server.log.read_text().splitlines()[since:]
        return lines if any(last in line for line in lines) else None
    return wait_until(added, 20, message=repr(last))


@pytest.fixture(scope="module")
def red(server):
    return new_team(server)


@pytest.fixture(scope="module")
def blue(server):
    return new_team(server)


@pytest.fixture(scope="module")
def red_sandbox(sdk_env, red):
    sbx = Sandbox.create(timeout=600, api_key=red, metadata={"owner": "red"})
    yield sbx
    kill_quietly(sbx)


@pytest.fixture(scope="module")
def blue_sandbox(sdk_env, blue):
    sbx = Sandbox.create(timeout=600, api_key=blue)
    yield sbx
    kill_quietly(sbx)


def api(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-KEY": key}, timeout=60)


def access_token(server, key: str, sandbox_id: str) -> str:
    """The sandbox's envd access token, as its own team gets it."""
    with api(server, key) as http:
        return http.get(f"/sandboxes/{sandbox_id}").json()["envdAccessToken"]


def control_routes(sandbox_id: str) -> list[tuple[str, str, dict | None]]:
    """Every control-plane route under a sandbox: (method, path, JSON body)."""
    s = f"/sandboxes/{sandbox_id}"
    return [("GET", s, None), ("DELETE", s, None), ("POST", s + "/timeout", {"timeout": 5}),
            ("POST", s + "/connect", {"timeout": 5}), ("POST", "/v2" + s + "/connect", {"timeout": 5}),
            ("POST", s + "/pause", {}), ("POST", s + "/resume", {"timeout": 5}), ("GET", s + "/metrics", None),
            ("GET", s + "/logs", None), ("GET", "/v2" + s + "/logs", None), ("GET", s + "/packages", None),
            ("POST", s + "/packages", {"packages": ["six"]}), ("POST", s + "/packages/uninstall", {"packages": ["six"]}),
            ("POST", s + "/snapshots", {"name": "stolen"}), ("POST", s + "/fork", {"count": 1})]


def test_another_teams_sandbox_is_404_on_every_route_like_an_unknown_one(server, red, blue, red_sandbox):
    sid = red_sandbox.sandbox_id
    with api(server, red) as owner, api(server, blue) as other:
        before = owner.get(f"/sandboxes/{sid}").json()
        unknown = "i" + "0" * 19
        for method, path, body in control_routes(sid):
            r = other.request(method, path, json=body)
            assert_json_error(r, 404)
            twin = other.request(method, path.replace(sid, unknown), json=body)
            # the same answer an id nobody owns gets, word for word
            assert (r.status_code, r.json()) == (twin.status_code, {**twin.json(), "message": twin.json()[
                "message"].replace(unknown, sid)}), (method, path, r.text, twin.text)
        after = owner.get(f"/sandboxes/{sid}").json()
    assert after == before  # not killed, paused, resumed or re-timed by any of it
    assert red_sandbox.commands.run("echo alive").stdout == "alive\n"


def test_the_official_sdk_cannot_reach_another_teams_sandbox(red_sandbox, red, blue):
    sid = red_sandbox.sandbox_id
    assert Sandbox.kill(sid, api_key=blue) is False  # 404 -> False, as for an unknown id
    for call in (lambda: Sandbox.connect(sid, api_key=blue), lambda: Sandbox.get_info(sid, api_key=blue),
                 lambda: Sandbox.set_timeout(sid, 10, api_key=blue),
                 lambda: Sandbox.get_metrics(sid, api_key=blue)):
        with pytest.raises(NotFoundException):
            call()
    assert sid not in {s.sandbox_id for s in Sandbox.list(api_key=blue).next_items()}
    assert sid in {s.sandbox_id for s in Sandbox.list(api_key=red).next_items()}
    assert red_sandbox.is_running()


def test_a_list_holds_only_the_callers_team_and_its_tokens(server, red, blue, red_sandbox, blue_sandbox):
    red_token = access_token(server, red, red_sandbox.sandbox_id)
    with api(server, blue) as other:
        for path in ("/v2/sandboxes", "/sandboxes", "/v2/sandboxes?state=running,paused"):
            r = other.get(path)
            assert r.status_code == 200, r.text
            assert [s["sandboxID"] for s in r.json()] == [blue_sandbox.sandbox_id], path
            assert red_token not in r.text and red_sandbox.sandbox_id not in r.text
    with api(server, server.api_key) as default_team:  # the preset key's team: neither of them
        listed = {s["sandboxID"] for s in default_team.get("/v2/sandboxes").json()}
        assert not listed & {red_sandbox.sandbox_id, blue_sandbox.sandbox_id}


def _start(http: httpx.Client, headers: dict, command: str) -> httpx.Response:
    payload = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-c", command]}}).encode()
    return http.post("/process.Process/Start", content=b"\x00" + len(payload).to_bytes(4, "big") + payload,
                     headers={"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
                              **headers})


def test_another_teams_credentials_open_nothing_in_sandbox_traffic(server, red, blue, red_sandbox, blue_sandbox):
    """Blue holds a valid token and API key, just not red's: neither opens red's sandbox."""
    sid = red_sandbox.sandbox_id
    blue_token = access_token(server, blue, blue_sandbox.sandbox_id)
    red_sandbox.files.write("/home/user/red.txt", "red only")
    marker = unique("/tmp/pwned-")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for headers in (envd_headers(sid, blue_token), {**envd_headers(sid), "X-API-KEY": blue},
                        {**envd_headers(sid), "Authorization": f"Bearer {blue}"}):
            r = http.get("/files", params={"path": "/home/user/red.txt"}, headers=headers)
            assert_json_error(r, 401)
            assert "red only" not in r.text
            assert_json_error(http.post("/files", params={"path": marker}, files={"file": ("x", b"x")},
                                        headers=headers), 401)
            r = _start(http, headers, f"touch {marker}")
            assert r.status_code == 401 or b"unauthenticated" in r.content, r.content[:300]
            for method, path, body in (("POST", "/filesystem.Filesystem/Remove", {"path": "/home/user/red.txt"}),
                                       ("POST", "/filesystem.Filesystem/ListDir", {"path": "/home/user"})):
                r = http.request(method, path, json=body, headers={"Connect-Protocol-Version": "1", **headers})
                assert r.status_code == 401, r.text
            for method, path in (("POST", "/execute"), ("GET", "/contexts"), ("POST", "/contexts")):
                r = http.request(method, path, json={"code": f"open('{marker}', 'w')"},
                                 headers={**headers, "E2B-Traffic-Access-Token": blue_token})
                assert r.status_code == 401, (path, r.status_code, r.text)
            assert http.get("/envs", headers=headers).status_code == 401
        # a URL blue signs for red's file opens blue's sandbox at most, never red's
        forged = blue_sandbox.download_url("/home/user/red.txt")
        r = http.get(forged, headers=envd_headers(sid))
        assert_json_error(r, 401)
        r = http.get(forged)  # no routing header: the signature picks blue's own sandbox
        assert r.status_code == 404 and "red only" not in r.text
    time.sleep(0.2)
    assert red_sandbox.files.exists(marker) is False
    assert red_sandbox.files.read("/home/user/red.txt") == "red only"


def test_max_sandboxes_quota_is_a_rate_limit_error(server, sdk_env):
    key = new_team(server, "--max-sandboxes", "2")
    first = Sandbox.create(timeout=300, api_key=key)
    second = Sandbox.create(timeout=300, api_key=key)
    try:
        since = len(server.log.read_text().splitlines())
        with pytest.raises(RateLimitException, match="max_sandboxes"):
            Sandbox.create(timeout=300, api_key=key)
        with api(server, key) as http:
            # a quota refusal is not retried: one refused create in the access log. A request's line is
            # written once its answer has gone, so the SDK's lines are all there once a later one is
            assert http.get("/v2/sandboxes").status_code == 200
            added = log_lines_until(server, since, "GET /v2/sandboxes 200")
            # (POST /sandboxes from the 2.4x SDKs, /v2/sandboxes from later ones)
            assert sum(bool(re.search(r"POST (/v2)?/sandboxes 429", line)) for line in added) == 1, added
            r = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
            body = assert_json_error(r, 429)
            assert r.headers["Should-Retry"] == "false"
            assert "may run 2 sandbox(es) at once" in body["message"]
            assert len(http.get("/v2/sandboxes").json()) == 2  # nothing half-created
            # a paused sandbox does not run: it makes room, and cannot resume past the quota
            assert http.post(f"/sandboxes/{first.sandbox_id}/pause").status_code == 204
            third = Sandbox.create(timeout=300, api_key=key)
            try:
                with pytest.raises(RateLimitException):
                    Sandbox.connect(first.sandbox_id, api_key=key)
                assert http.get(f"/sandboxes/{first.sandbox_id}").json()["state"] == "paused"
                third.kill()
                resumed = Sandbox.connect(first.sandbox_id, api_key=key)
                assert resumed.commands.run("echo back").stdout == "back\n"
            finally:
                kill_quietly(third)
    finally:
        kill_quietly(first)
        kill_quietly(second)
    # other teams never felt it
    assert Sandbox.create(timeout=60, api_key=server.api_key).kill()


@pytest.mark.parametrize("quota, limit", [("--max-memory-mb", "memory_mb"), ("--max-disk-mb", "disk_mb")])
def test_memory_and_disk_quotas(server, sdk_env, quota, limit):
    key = new_team(server, quota, "700")
    with api(server, key) as http:
        body = {"templateID": "base", "timeout": 120, "limits": {limit: 400}}
        r = http.post("/v2/sandboxes", json=body)
        assert r.status_code == 201, r.text
        held = r.json()["sandboxID"]
        try:
            refused = http.post("/v2/sandboxes", json=body)
            message = assert_json_error(refused, 429)["message"]
            assert quota.lstrip("-").replace("-", "_") in message and "400 MiB" in message, message
            with pytest.raises(RateLimitException):
                Sandbox.create(timeout=60, api_key=key)  # the default limits do not fit either
            small = http.post("/v2/sandboxes", json={**body, "limits": {limit: 300}})  # 400 + 300 fit
            assert small.status_code == 201, small.text
            assert http.delete(f"/sandboxes/{small.json()['sandboxID']}").status_code == 204
        finally:
            assert http.delete(f"/sandboxes/{held}").status_code == 204


def _same_as_unknown(http: httpx.Client, method: str, path: str, real: str, unknown: str, body=None) -> None:
    """`path` naming another team's `real` resource answers as the same path naming `unknown` does."""
    r = http.request(method, path, json=body)
    twin = http.request(method, path.replace(real, unknown), json=body)
    assert_json_error(r, 404)
    assert (r.status_code, r.json()["message"]) == (twin.status_code, twin.json()["message"].replace(unknown, real)), \
        (method, path, r.text, twin.text)


def test_another_teams_snapshots_are_unseen_and_unreachable(server, red, blue, red_sandbox, blue_sandbox):
    name = unique("snap")
    red_sandbox.files.write("/home/user/whose.txt", "red's")
    blue_sandbox.files.write("/home/user/whose.txt", "blue's")
    with api(server, red) as owner, api(server, blue) as other:
        made = owner.post(f"/sandboxes/{red_sandbox.sandbox_id}/snapshots", json={"name": name})
        assert made.status_code == 201, made.text
        ref = made.json()["snapshotID"]  # "name:default"
        internal = _internal_id(server, name)
        try:
            # blue's lists never show it, by name, by sandbox or at all
            for params in ({}, {"name": name}, {"sandboxID": red_sandbox.sandbox_id}):
                r = other.get("/snapshots", params=params)
                assert r.status_code == 200 and name not in r.text and internal not in r.text, r.text
            # by id: the answer of an unknown snapshot; by name: blue has none of that name
            unknown = "snap" + "0" * 16
            _same_as_unknown(other, "DELETE", f"/templates/{internal}", internal, unknown)
            _same_as_unknown(other, "POST", f"/snapshots/{internal}/export", internal, unknown)
            assert_json_error(other.delete(f"/templates/{ref}"), 404)
            assert_json_error(other.post(f"/snapshots/{ref}/export"), 404)
            for template in (internal, ref, name):  # a create from it fails as from an unknown template
                r = other.post("/v2/sandboxes", json={"templateID": template, "timeout": 30})
                twin = other.post("/v2/sandboxes", json={"templateID": unknown, "timeout": 30})
                assert_json_error(r, 404)
                assert r.json()["message"].replace(template, "X") == twin.json()["message"].replace(unknown, "X")
            # exported by red, blue cannot import it from the server's storage
            assert owner.post(f"/snapshots/{internal}/export").status_code == 200
            r = other.post("/snapshots/import", json={"snapshotID": internal})
            twin = other.post("/snapshots/import", json={"snapshotID": unknown})
            assert_json_error(r, 404)
            assert r.json()["message"].replace(internal, "X") == twin.json()["message"].replace(unknown, "X")
            # the same name is blue's own to use: two snapshots, each team's sandboxes get its own
            mine = other.post(f"/sandboxes/{blue_sandbox.sandbox_id}/snapshots", json={"name": name})
            assert mine.status_code == 201 and mine.json()["snapshotID"] == ref, mine.text
            for key, expected in ((red, "red's"), (blue, "blue's")):
                child = Sandbox.create(name, timeout=60, api_key=key)
                try:
                    assert child.files.read("/home/user/whose.txt") == expected
                finally:
                    kill_quietly(child)
            assert other.delete(f"/templates/{ref}").status_code == 204  # blue's, not red's
            assert [s["snapshotID"] for s in owner.get("/snapshots", params={"name": name}).json()] == [ref]
        finally:
            owner.delete(f"/templates/{ref}")
            other.delete(f"/templates/{ref}")


def _internal_id(server, name: str) -> str:
    import sqlite3

    db = sqlite3.connect(server.home / "state.db")
    try:
        return db.execute("SELECT id FROM snapshots WHERE name=?", (name,)).fetchone()[0]
    finally:
        db.close()


def test_another_teams_volumes_are_unseen_and_unreachable(server, red, blue):
    name = unique("vol")
    with api(server, red) as owner, api(server, blue) as other:
        vol = owner.post("/volumes", json={"name": name, "sizeMB": 32}).json()
        try:
            assert name not in other.get("/volumes").text
            unknown = "vol" + "0" * 16
            for method in ("GET", "DELETE"):
                _same_as_unknown(other, method, f"/volumes/{vol['volumeID']}", vol["volumeID"], unknown)
                assert_json_error(other.request(method, f"/volumes/{name}"), 404)  # blue has none of that name
            # the same name is blue's own: a create mounting it gets blue's volume, not red's
            theirs = other.post("/volumes", json={"name": name, "sizeMB": 32}).json()
            try:
                assert theirs["volumeID"] != vol["volumeID"]
                with httpx.Client(base_url=server.url, timeout=30) as content:
                    put = content.put(f"/volumecontent/{vol['volumeID']}/file", params={"path": "/red.txt"},
                                      content=b"red's", headers={"Authorization": f"Bearer {vol['token']}"})
                    assert put.status_code == 201, put.text
                    # blue's volume token opens blue's volume only
                    r = content.get(f"/volumecontent/{vol['volumeID']}/file", params={"path": "/red.txt"},
                                    headers={"Authorization": f"Bearer {theirs['token']}"})
                    assert_json_error(r, 401)
                r = other.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60,
                                                       "volumeMounts": [{"name": name, "path": "/data"}]})
                assert r.status_code == 201, r.text
                sbx = Sandbox.connect(r.json()["sandboxID"], api_key=blue)
                try:
                    assert sbx.files.exists("/data") and not sbx.files.exists("/data/red.txt")
                finally:
                    kill_quietly(sbx)
            finally:
                assert other.delete(f"/volumes/{theirs['volumeID']}").status_code == 204
        finally:
            assert owner.delete(f"/volumes/{vol['volumeID']}").status_code == 204


def test_volume_sizes_count_toward_the_disk_quota(server, sdk_env):
    key = new_team(server, "--max-disk-mb", "700")
    with api(server, key) as http:
        vol = http.post("/volumes", json={"name": unique("vol"), "sizeMB": 512})
        assert vol.status_code == 201, vol.text
        try:
            refused = http.post("/volumes", json={"name": unique("vol"), "sizeMB": 256})
            assert "max_disk_mb" in assert_json_error(refused, 429)["message"]
            assert refused.headers["Should-Retry"] == "false"
            r = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, "limits": {"disk_mb": 256}})
            assert "max_disk_mb" in assert_json_error(r, 429)["message"]
            assert len(http.get("/volumes").json()) == 1  # nothing half-made
        finally:
            assert http.delete(f"/volumes/{vol.json()['volumeID']}").status_code == 204
        again = http.post("/volumes", json={"name": unique("vol"), "sizeMB": 256})  # the room is back
        assert again.status_code == 201, again.text
        assert http.delete(f"/volumes/{again.json()['volumeID']}").status_code == 204
