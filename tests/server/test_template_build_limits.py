"""Bounds on template builds (docs/templates.md), each on a server of its own with small settings:
a team's uploaded build files (bounded, counted in its max_disk_mb, removed with their template or
after SANDLOT_TEMPLATE_FILES_TTL), a build's whole duration (SANDLOT_TEMPLATE_BUILD_TIMEOUT), and
the build slots shared fairly between teams."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import uuid

import httpx
import pytest

from support import checked_server, sdk_environment, team_key, wait_until

BOUND = 2 << 20  # SANDLOT_TEMPLATE_FILES_MAX_BYTES of the uploads' server
TTL = 2  # SANDLOT_TEMPLATE_FILES_TTL of the sweep's server
TIME_LIMIT = 8  # SANDLOT_TEMPLATE_BUILD_TIMEOUT of the same server (a build of one COPY takes ~1 s)
NO_POOLS = {"SANDLOT_POOL_TEMPLATES": ""}


@pytest.fixture(scope="module")
def uploads_server():
    with checked_server(extra_env={**NO_POOLS, "SANDLOT_TEMPLATE_FILES_MAX_BYTES": str(BOUND)}) as srv:
        yield srv


@pytest.fixture(scope="module")
def short_server():
    with checked_server(extra_env={**NO_POOLS, "SANDLOT_TEMPLATE_FILES_TTL": str(TTL),
                                   "SANDLOT_TEMPLATE_BUILD_TIMEOUT": str(TIME_LIMIT)}) as srv:
        yield srv


def _client(server, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-KEY": key or server.api_key}, timeout=60)


def _template(api) -> tuple[str, str]:
    made = api.post("/v3/templates", json={"name": f"limits-{uuid.uuid4().hex[:8]}"})
    assert made.status_code == 202, made.text
    return made.json()["templateID"], made.json()["buildID"]


def _tarball(content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _upload(api, tid: str, data, files_hash: str | None = None) -> httpx.Response:
    """Ask for the link of `files_hash` (the data's sha256) and PUT `data` (bytes: with a
    Content-Length; a generator: chunked) unless it is present (then None)."""
    files_hash = files_hash or hashlib.sha256(data).hexdigest()
    link = api.get(f"/templates/{tid}/files/{files_hash}")
    assert link.status_code == 201, link.text
    if link.json()["present"]:
        return None
    return httpx.put(link.json()["url"], content=data, timeout=60)


def _kept(server, team: str) -> list[str]:
    """The names in the team's folder of uploaded files (partial ones included: they start with '.')."""
    folder = server.home / "template-files" / hashlib.sha256(team.encode()).hexdigest()[:32]
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def _start(api, tid: str, bid: str, spec: dict) -> None:
    started = api.post(f"/v2/templates/{tid}/builds/{bid}", json=spec)
    assert started.status_code == 202, started.text


def _status(api, tid: str, bid: str) -> dict:
    answer = api.get(f"/templates/{tid}/builds/{bid}/status")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _ended(api, tid: str, bid: str, within: float = 120) -> dict:
    return wait_until(lambda: (s := _status(api, tid, bid))["status"] in ("ready", "error") and s, within,
                      interval=0.2, message=f"the end of build {bid}")


def _copy(*hashes: str) -> dict:
    return {"fromTemplate": "base", "steps": [{"type": "COPY", "args": ["a.txt", f"/home/user/{i}/"], "filesHash": h}
                                              for i, h in enumerate(hashes)]}


def _refused(answer: httpx.Response, names: str) -> None:
    assert answer.status_code == 429, (answer.status_code, answer.text)
    assert names in answer.json()["message"] and answer.headers["should-retry"] == "false", answer.json()


# ---- uploads -------------------------------------------------------------------------------------

def test_a_teams_uploads_are_bounded(uploads_server):
    """A team keeps at most SANDLOT_TEMPLATE_FILES_MAX_BYTES of uploads: past it a 429, at once
    with a Content-Length, as it arrives without one, and no partial file is left. Other teams keep
    their own. (Any number of 1 GiB uploads were kept, under any hash.)"""
    srv = uploads_server
    other_team, _, other_key = team_key(srv)
    with _client(srv) as api, _client(srv, other_key) as other:
        tid, _ = _template(api)
        first = os.urandom(BOUND * 6 // 10)
        assert _upload(api, tid, first).status_code == 200
        second = os.urandom(BOUND * 6 // 10)
        _refused(_upload(api, tid, second), "SANDLOT_TEMPLATE_FILES_MAX_BYTES")
        chunks = (second[i:i + 65536] for i in range(0, len(second), 65536))
        _refused(_upload(api, tid, chunks, hashlib.sha256(second).hexdigest()), "SANDLOT_TEMPLATE_FILES_MAX_BYTES")
        assert _kept(srv, "default") == [hashlib.sha256(first).hexdigest()]
        other_tid, _ = _template(other)
        assert _upload(other, other_tid, second).status_code == 200
        assert _kept(srv, other_team) == [hashlib.sha256(second).hexdigest()]
        # what the first team deletes makes room again
        assert api.delete(f"/templates/{tid}").status_code == 204
        tid, _ = _template(api)
        assert _upload(api, tid, second).status_code == 200
        assert api.delete(f"/templates/{tid}").status_code == 204
        assert other.delete(f"/templates/{other_tid}").status_code == 204


def test_the_sdk_is_told_and_keeps_nothing(uploads_server, tmp_path):
    """The e2b SDK's `copy` of more than the team may keep: its upload is refused (429), and the
    build never starts."""
    from e2b import FileUploadException, Template

    (tmp_path / "big.bin").write_bytes(os.urandom(BOUND + 1))  # random: gzip does not shrink it
    name = f"limits-{uuid.uuid4().hex[:8]}"
    with sdk_environment(uploads_server), _client(uploads_server) as api:
        try:
            with pytest.raises(FileUploadException, match="429"):
                Template.build(Template(file_context_path=str(tmp_path)).from_template("base")
                               .copy("big.bin", "/home/user/"), name)
            assert _kept(uploads_server, "default") == []
        finally:
            assert api.delete(f"/templates/{name}").status_code == 204


def test_uploads_count_toward_the_teams_disk_quota(uploads_server):
    """Uploads, volumes and sandboxes share the team's max_disk_mb: a volume's size leaves less room
    for uploads, and uploads less room for a volume."""
    srv = uploads_server
    _, _, key = team_key(srv, None, "--max-disk-mb", "17")
    with _client(srv, key) as api:
        vol = api.post("/volumes", json={"name": "v", "sizeMB": 16})
        assert vol.status_code == 201, vol.text
        tid, _ = _template(api)
        assert _upload(api, tid, os.urandom(600 << 10)).status_code == 200  # 16 MiB + 600 KiB
        _refused(_upload(api, tid, os.urandom(600 << 10)), "max_disk_mb")  # below the bound, past the quota
        assert api.delete(f"/volumes/{vol.json()['volumeID']}").status_code == 204
        _refused(api.post("/volumes", json={"name": "w", "sizeMB": 17}), "max_disk_mb")  # the upload's 1 MiB
        vol = api.post("/volumes", json={"name": "w", "sizeMB": 16})
        assert vol.status_code == 201, vol.text
        assert api.delete(f"/templates/{tid}").status_code == 204
        assert api.delete(f"/volumes/{vol.json()['volumeID']}").status_code == 204


def test_a_deleted_templates_uploads_go_unless_another_template_uses_them(uploads_server):
    """Deleting a template removes its uploads (those its builds named, those it only asked for),
    but not the ones a build of another template of the team names, nor one another template has
    just asked for (its build may be about to start). They all stayed forever."""
    srv = uploads_server
    with _client(srv) as api:
        one, one_build = _template(api)
        two, two_build = _template(api)
        three, _ = _template(api)
        data = {name: _tarball(f"{name} {uuid.uuid4()}\n".encode()) for name in ("own", "shared", "unused", "asked")}
        hashes = {name: hashlib.sha256(d).hexdigest() for name, d in data.items()}
        for name in ("own", "shared", "unused", "asked"):
            assert _upload(api, one, data[name]).status_code == 200
        assert _upload(api, two, data["shared"]) is None  # present: not uploaded again
        assert _upload(api, three, data["asked"]) is None
        _start(api, one, one_build, _copy(hashes["own"], hashes["shared"]))
        _start(api, two, two_build, _copy(hashes["shared"]))
        assert _ended(api, one, one_build)["status"] == "ready"
        assert _ended(api, two, two_build)["status"] == "ready"
        assert api.delete(f"/templates/{one}").status_code == 204
        assert _kept(srv, "default") == sorted([hashes["shared"], hashes["asked"]])
        assert api.delete(f"/templates/{two}").status_code == 204
        assert api.delete(f"/templates/{three}").status_code == 204
        assert _kept(srv, "default") == []


def test_uploads_no_build_names_are_swept_after_the_ttl(short_server):
    """An upload no build names goes SANDLOT_TEMPLATE_FILES_TTL after it came (the reaper's chore);
    one a build names stays, and its link says present."""
    srv = short_server
    with _client(srv) as api:
        tid, bid = _template(api)
        unused, used = _tarball(b"unused\n"), _tarball(f"used {uuid.uuid4()}\n".encode())
        assert _upload(api, tid, unused).status_code == 200
        assert _upload(api, tid, used).status_code == 200
        _start(api, tid, bid, _copy(hashlib.sha256(used).hexdigest()))
        assert _ended(api, tid, bid)["status"] == "ready"
        wait_until(lambda: _kept(srv, "default") == [hashlib.sha256(used).hexdigest()], 30, interval=0.2,
                   message="the unused upload's sweep")
        assert _upload(api, tid, used) is None
        assert api.delete(f"/templates/{tid}").status_code == 204
        assert _kept(srv, "default") == []


# ---- builds --------------------------------------------------------------------------------------

def test_a_build_past_its_time_limit_fails_and_its_sandbox_is_killed(short_server):
    """A build's base and steps run for at most SANDLOT_TEMPLATE_BUILD_TIMEOUT: then it fails
    saying so, its step's sandbox killed and its slot free. (It ran as long as its steps did: 200
    steps of an hour each held a slot for 200 hours.)"""
    srv = short_server
    sandboxes = srv.home / "sandboxes"
    before = set(sandboxes.iterdir())
    with _client(srv) as api:
        tid, bid = _template(api)
        started = time.monotonic()
        # steps each shorter than the limit: it bounds them all together
        steps = [{"type": "RUN", "args": [f"sleep {TIME_LIMIT // 2}; echo {i}"]} for i in range(4)]
        _start(api, tid, bid, {"fromTemplate": "base", "steps": steps})
        done = _ended(api, tid, bid, within=60)
        assert done["status"] == "error" and time.monotonic() - started < 60
        step = done["reason"]["step"]
        message = f"the build passed its time limit of {TIME_LIMIT} s (SANDLOT_TEMPLATE_BUILD_TIMEOUT) at step {step}"
        assert step in ("2", "3") and done["reason"]["message"].startswith(message), done["reason"]
        logs = api.get(f"/templates/{tid}/builds/{bid}/status", params={"limit": 100}).json()["logEntries"]
        assert any(e["level"] == "error" and e["message"].startswith(message) for e in logs), logs[-3:]
        wait_until(lambda: set(sandboxes.iterdir()) == before, 20, message="the step's sandbox gone")
        # its slot is free: the next build runs
        tid2, bid2 = _template(api)
        _start(api, tid2, bid2, {"fromTemplate": "base", "steps": [{"type": "RUN", "args": ["true"]}]})
        assert _ended(api, tid2, bid2)["status"] == "ready"
        for t in (tid, tid2):
            assert api.delete(f"/templates/{t}").status_code == 204


def test_a_freed_slot_goes_to_the_team_holding_fewest(uploads_server):
    """A team alone uses both slots; once another team's build waits, the next slot freed goes to
    it, before the first team's own waiting build. (Builds waited in one queue: a team that queued
    long builds first kept every other team waiting.)"""
    srv = uploads_server
    _, _, key = team_key(srv)
    sleep = {"fromTemplate": "base", "steps": [{"type": "RUN", "args": ["sleep 600"]}]}
    with _client(srv) as api, _client(srv, key) as other:
        mine, theirs = [_template(api) for _ in range(3)], _template(other)
        try:
            for tid, bid in mine:
                _start(api, tid, bid, sleep)
            wait_until(lambda: [_status(api, *m)["status"] for m in mine] == ["building", "building", "waiting"],
                       30, interval=0.1, message="both slots used by one team")
            _start(other, *theirs, {"fromTemplate": "base", "steps": [{"type": "RUN", "args": ["true"]}]})
            assert api.delete(f"/templates/{mine[0][0]}").status_code == 204  # its slot is freed
            wait_until(lambda: _status(other, *theirs)["status"] != "waiting", 30, interval=0.05,
                       message="the other team's build to start")
            assert _status(api, *mine[2])["status"] == "waiting"
            assert _ended(other, *theirs)["status"] == "ready"
            # then the first team's: it takes the slot back
            wait_until(lambda: _status(api, *mine[2])["status"] == "building", 30, interval=0.1,
                       message="the first team's waiting build to start")
        finally:
            for tid, _ in mine[1:]:
                api.delete(f"/templates/{tid}")
            other.delete(f"/templates/{theirs[0]}")
