"""The audit trail (server/audit.py) against a real server driven by the official e2b SDK, raw
HTTP and the CLI: a row for each action and refusal, team-scoped reads, admin reads, paging and
filters, the server's own actions, an abandoned create, and never a secret in any row."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
import uuid

import httpx
import pytest

from support import leftovers, server_cmd, start_server, state_cli, team_key


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("audit") / "home", pool_size=0)
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text()
    assert not leftovers(server.home)


@pytest.fixture
def official_sdk(srv, monkeypatch):
    for key, value in srv.env().items():
        monkeypatch.setenv(key, value)
    return srv


def read(srv, key: str, **params) -> dict:
    r = httpx.get(f"{srv.url}/audit", params=params, headers={"X-API-KEY": key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def everything(srv, key: str, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = read(srv, key, limit=50, **params, **({"cursor": cursor} if cursor else {}))
        rows += page["entries"]
        if not (cursor := page["next"]):
            return rows


def test_every_action_is_recorded_and_no_row_holds_a_secret(srv, official_sdk):
    from e2b import Sandbox

    team, key_id, key = team_key(srv, "audited")
    other_team, _, other_key = team_key(srv, "prying")
    content = f"file-content-{uuid.uuid4().hex}"
    secret_env = f"env-secret-{uuid.uuid4().hex}"
    marker = f"cmd-marker-{uuid.uuid4().hex}"

    sbx = Sandbox.create(timeout=300, api_key=key)
    sid = sbx.sandbox_id
    token = httpx.get(f"{srv.url}/sandboxes/{sid}", headers={"X-API-KEY": key}).json()["envdAccessToken"]
    assert sbx.commands.run(f"echo {marker} $W", envs={"W": secret_env}).stdout.strip().endswith(secret_env)
    sbx.files.write("/home/user/a.txt", content)
    sbx.files.make_dir("/home/user/d")
    sbx.files.rename("/home/user/a.txt", "/home/user/d/b.txt")
    sbx.files.remove("/home/user/d/b.txt")
    upload, download = sbx.upload_url("/home/user/signed.txt"), sbx.download_url("/home/user/signed.txt")
    assert httpx.post(upload, files={"file": ("x", content.encode())}).status_code == 200
    assert httpx.get(download).text == content
    Sandbox.connect(sid, api_key=key, timeout=300)
    Sandbox.set_timeout(sid, 200, api_key=key)
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": key}, timeout=60) as http:
        assert http.post(f"/sandboxes/{sid}/pause").status_code == 204
        assert http.post(f"/sandboxes/{sid}/resume", json={"timeout": 120}).status_code == 201
    # refused: a wrong key, another team's key, a wrong sandbox token
    assert httpx.get(f"{srv.url}/v2/sandboxes", headers={"X-API-KEY": "e2b_" + "f" * 40}).status_code == 401
    assert httpx.delete(f"{srv.url}/sandboxes/{sid}", headers={"X-API-KEY": other_key}).status_code == 404
    assert httpx.get(f"{srv.url}/sandboxes/{sid}", headers={"X-API-KEY": other_key}).status_code == 404
    r = httpx.get(f"{srv.url}/files", params={"path": "/etc/hostname"},
                  headers={"E2b-Sandbox-Id": sid, "X-Access-Token": "wrong"})
    assert r.status_code == 401
    assert Sandbox.kill(sid, api_key=key) is True
    state_cli(srv, "keys", "revoke", key_id)

    rows = everything(srv, srv.api_key, team="audited")  # an admin reads one team's trail
    mine = [(r["action"], r["outcome"], r["key"], r["sandbox"]) for r in reversed(rows)]
    expected = [
        ("team.create", "ok", "local-cli", None), ("key.create", "ok", "local-cli", None),
        ("sandbox.create", "ok", key_id, sid), ("process.start", "ok", None, sid),
        ("file.write", "ok", None, sid), ("file.make_dir", "ok", None, sid), ("file.move", "ok", None, sid),
        ("file.remove", "ok", None, sid), ("file.write", "ok", None, sid), ("file.read", "ok", None, sid),
        ("sandbox.connect", "ok", key_id, sid), ("sandbox.set_timeout", "ok", key_id, sid),
        ("sandbox.pause", "ok", key_id, sid), ("sandbox.resume", "ok", key_id, sid),
        ("GET /files", "denied", None, sid), ("sandbox.kill", "ok", key_id, sid), ("key.revoke", "ok", "local-cli", None)]
    assert mine == expected, mine
    by_action = {r["action"]: r for r in rows}
    assert by_action["file.read"]["detail"] == {"via": "signature", "path": "/home/user/signed.txt"}
    assert by_action["file.remove"]["detail"] == {"path": "/home/user/d/b.txt", "via": "token"}
    assert by_action["sandbox.create"]["detail"] == {"template": "base"}
    assert all(r["team"] == team for r in rows)

    # the prying team sees its refused attempts, as it would for an id nobody owns...
    prying = everything(srv, other_key)
    assert [(r["action"], r["outcome"], r["status"], r["sandbox"]) for r in reversed(prying)] == [
        ("team.create", "ok", None, None), ("key.create", "ok", None, None),
        ("sandbox.kill", "not_found", 404, sid), ("sandbox.get", "not_found", 404, sid)]
    assert all("foreignTeam" not in r for r in prying)
    # ...an admin sees whose sandbox it was, and the refusal no team made
    admin = everything(srv, srv.api_key)
    assert {r["foreignTeam"] for r in admin if r["team"] == other_team and r["sandbox"] == sid} == {team}
    assert any(r["team"] is None and r["action"] == "sandbox.list" and r["outcome"] == "denied" for r in admin)

    # nothing secret anywhere in the table
    db = sqlite3.connect(srv.home / "state.db")
    dump = "\n".join(map(repr, db.execute("SELECT * FROM audit")))
    db.close()
    signatures = [part.split("=", 1)[1] for url in (upload, download) for part in url.split("?")[1].split("&")
                  if part.startswith("signature=")]
    for secret in (key, other_key, srv.api_key, token, content, secret_env, marker, *signatures):
        assert secret not in dump, secret


def test_a_team_reads_only_its_own_trail_pages_and_filters(srv, official_sdk):
    from e2b import Sandbox

    _, _, key = team_key(srv, "pager")
    neighbour_team, _, neighbour = team_key(srv, "neighbour")
    Sandbox.create(timeout=60, api_key=neighbour).kill()
    made = [Sandbox.create(timeout=60, api_key=key) for _ in range(3)]
    for sbx in made:
        sbx.files.write("/tmp/x", "x")
        sbx.kill()
    rows = everything(srv, key)
    assert {r["team"] for r in rows} == {rows[0]["team"]} and len(rows) >= 9
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)  # newest first, no row twice
    page = read(srv, key, limit=2)
    assert len(page["entries"]) == 2 and page["next"] == str(page["entries"][-1]["id"])
    assert [r["action"] for r in read(srv, key, action="file.")["entries"]] == ["file.write"] * 3
    assert [r["action"] for r in read(srv, key, action="sandbox.kill")["entries"]] == ["sandbox.kill"] * 3
    one = read(srv, key, sandbox=made[0].sandbox_id)["entries"]
    assert [r["action"] for r in one] == ["sandbox.kill", "file.write", "sandbox.create"]
    assert read(srv, key, since=time.time() + 60)["entries"] == []
    assert read(srv, key, until="2000-01-01T00:00:00Z")["entries"] == []
    # another team's trail is an admin's to read; bad parameters are 400s
    for params, status in (({"team": "neighbour"}, 403), ({"limit": "0"}, 400), ({"limit": "x"}, 400),
                           ({"cursor": "-1"}, 400), ({"since": "yesterday"}, 400), ({"team": "nope"}, 403)):
        r = httpx.get(f"{srv.url}/audit", params=params, headers={"X-API-KEY": key}, timeout=30)
        assert r.status_code == status and r.json()["code"] == status, (params, r.text)
    # whether another team exists is not told: an unknown name and a neighbour's get the same answer
    answers = [httpx.get(f"{srv.url}/audit", params={"team": t}, headers={"X-API-KEY": key}, timeout=30)
               for t in ("neighbour", neighbour_team, "nope", "team_000000000000")]
    assert len({(r.status_code, r.text) for r in answers}) == 1, [r.text for r in answers]
    assert httpx.get(f"{srv.url}/audit", params={"team": "nope"}, headers={"X-API-KEY": srv.api_key},
                     timeout=30).status_code == 404  # an admin is told
    assert {r["team"] for r in read(srv, srv.api_key, team="neighbour")["entries"]} == {neighbour_team}
    # the CLI reads the same trail, with the same rights
    out = subprocess.run([*server_cmd(), "audit", "--json", "--api-url", srv.url, "--api-key", key, "--limit", "500"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    now = everything(srv, key)  # the refused reads above are in it too
    assert [(r["action"], r["outcome"]) for r in now[:5]] == [("audit.read", "denied")] * 5
    assert [r["id"] for r in json.loads(out.stdout)] == [r["id"] for r in now]
    text = subprocess.run([*server_cmd(), "audit", "--action", "sandbox.create", "--api-url", srv.url, "--api-key",
                           key], capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert len(text) == 3 and all("sandbox.create  ok 201" in line for line in text), text


def test_what_the_server_does_by_itself_is_recorded(srv, official_sdk):
    from e2b import Sandbox

    team, _, key = team_key(srv, "timing-out")
    sid = Sandbox.create(timeout=1, api_key=key).sandbox_id
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = read(srv, srv.api_key, team=team, action="sandbox.kill")["entries"]
        if rows:
            break
        time.sleep(0.2)
    [row] = rows
    assert (row["key"], row["sandbox"], row["outcome"], row["detail"]) == ("system", sid, "ok", {"reason": "timeout"})


def test_an_abandoned_create_leaves_no_sandbox_running(srv):
    _, _, key = team_key(srv, "impatient")
    body = json.dumps({"templateID": "base", "timeout": 600, "limits": {"memory_mb": 300}}).encode()  # no pool
    with socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1]))) as s:
        s.sendall(b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"X-API-KEY: " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    # and leaves at once: the create (~30 ms, no pool) starts on the whole request and cannot end
    # before the server sees the close (a 20 ms wait before it let a fast create answer 201 in CI)
    deadline = time.monotonic() + 20
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = read(srv, key, action="sandbox.create")["entries"]
        time.sleep(0.1)
    [row] = rows
    assert (row["outcome"], row["status"]) == ("abandoned", 499) and row["sandbox"], row
    assert row["detail"] == {"template": "base", "ended": "client left during create"}
    assert httpx.get(f"{srv.url}/v2/sandboxes", headers={"X-API-KEY": key}).json() == []
    assert not (srv.home / "sandboxes" / row["sandbox"]).exists()


def test_snapshot_fork_and_volume_actions_are_recorded(srv):
    team, key_id, key = team_key(srv, "snapshotting")
    name, vol_name = f"s{uuid.uuid4().hex[:8]}", f"v{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": key}, timeout=120) as http:
        sid = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120}).json()["sandboxID"]
        snap = http.post(f"/sandboxes/{sid}/snapshots", json={"name": name}).json()["snapshotID"]
        [child] = http.post(f"/sandboxes/{sid}/fork", json={"count": 1, "timeout": 60}).json()
        assert http.post(f"/snapshots/{snap}/export").status_code == 200
        assert http.delete(f"/templates/{snap}").status_code == 204
        vol = http.post("/volumes", json={"name": vol_name, "sizeMB": 32}).json()
        written = httpx.put(f"{srv.url}/volumecontent/{vol['volumeID']}/file", params={"path": "/a.txt"},
                            content=b"volume content", headers={"Authorization": f"Bearer {vol['token']}"})
        assert written.status_code == 201, written.text
        assert httpx.get(f"{srv.url}/volumecontent/{vol['volumeID']}/file", params={"path": "/a.txt"},
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.delete(f"/volumes/{vol['volumeID']}").status_code == 204
        for gone in (child["sandbox"]["sandboxID"], sid):
            assert http.delete(f"/sandboxes/{gone}").status_code == 204

    rows = {r["action"]: r for r in everything(srv, srv.api_key, team="snapshotting")}
    assert (rows["snapshot.create"]["sandbox"], rows["snapshot.create"]["key"]) == (sid, key_id)
    internal = rows["snapshot.create"]["detail"]["snapshot"]
    assert rows["snapshot.create"]["detail"] == {"snapshot": internal, "name": name}
    assert rows["sandbox.fork"]["detail"] == {"count": 1, "children": [child["sandbox"]["sandboxID"]]}
    assert rows["snapshot.export"]["detail"] == {"snapshot": internal}
    assert rows["snapshot.delete"]["detail"] == {"snapshot": snap}
    assert rows["volume.create"]["detail"] == {"name": vol_name, "size_mb": 32, "volume": vol["volumeID"]}
    # the content API: its writes with the volume's team (no key: the volume's token), refusals too
    write = rows["volume.file.write"]
    assert (write["team"], write["key"], write["detail"]) == (team, None, {"path": "/a.txt", "volume": vol["volumeID"]})
    assert rows["volume.delete"]["outcome"] == "ok"
    admin = everything(srv, srv.api_key, action="GET /volumecontent/{volume_id}/file")
    assert [(r["outcome"], r["team"]) for r in admin] == [("denied", None)]
    db = sqlite3.connect(srv.home / "state.db")
    dump = "\n".join(map(repr, db.execute("SELECT * FROM audit")))
    db.close()
    assert vol["token"] not in dump and "volume content" not in dump


def test_network_and_port_actions_are_recorded(srv):
    team, key_id, key = team_key(srv, "networking")
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": key}, timeout=120) as http:
        sid = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120}).json()["sandboxID"]
        changed = http.put(f"/sandboxes/{sid}/network", json={"allowOut": ["example.test"], "denyOut": ["0.0.0.0/0"]})
        assert changed.status_code == 204, changed.text
        preview = http.post(f"/sandboxes/{sid}/ports/8000/expose", json={"ttl": 60}).json()
        assert http.delete(f"/sandboxes/{sid}/ports/8000/expose").status_code == 204
        assert http.post(f"/sandboxes/{sid}/ports/8001/wait", json={"timeout": 0}).status_code == 504
        assert http.delete(f"/sandboxes/{sid}").status_code == 204

    rows = {r["action"]: r for r in everything(srv, srv.api_key, team="networking")}
    update = rows["sandbox.network.update"]
    assert (update["sandbox"], update["key"], update["outcome"]) == (sid, key_id, "ok")
    assert update["detail"] == {"network": "internet, allow 1, deny 1"}  # policy.describe()
    assert rows["port.expose"]["detail"] == {"port": 8000, "ttl": 60}
    assert rows["port.unexpose"]["detail"] == {"port": 8000}
    assert rows["port.wait"]["outcome"] == "failed"
    db = sqlite3.connect(srv.home / "state.db")
    dump = "\n".join(map(repr, db.execute("SELECT * FROM audit")))
    db.close()
    token = preview["url"].split("//", 1)[1].split(".", 1)[0].rsplit("-", 1)[1]
    assert token not in dump  # a preview URL's token is a credential
