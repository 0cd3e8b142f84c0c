"""A snapshot exported by one sandlot host and imported by another (another state dir), through a
real S3-compatible server (moto's server mode, started here) and through a shared directory:
files kept exactly, layers uploaded and downloaded once, a tampered layer refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import boto3
import httpx
import pytest

from host_resources import Footprint
from support import free_port, start_server, team_key, tracebacks

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace runtime needs root")

CHECK = ("cd /home/user/w && sha256sum big.bin && stat -c '%a %u %g %s %Y' big.bin tool && readlink link && "
         "python3 -c \"import os; print(os.getxattr('big.bin', 'user.tag'))\" && du -k sparse | cut -f1 && "
         "(test -e /etc/motd || echo motd-gone)")
SETUP = ("mkdir -p /home/user/w && cd /home/user/w && head -c 5000000 /dev/urandom > big.bin && "
         "python3 -c \"import os; os.setxattr('big.bin', 'user.tag', b'v1')\" && ln -s big.bin link && "
         "truncate -s 20M sparse && printf x > tool && sudo chown 0:0 tool && sudo chmod 4750 tool && "
         "sudo rm /etc/motd")


@pytest.fixture
def s3(tmp_path):
    """moto's S3 server on a free port, a bucket in it, and the environment boto3 reads."""
    port = free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(env["AWS_ENDPOINT_URL"], timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="us-east-1")
        client.create_bucket(Bucket="sandlot-snapshots")
        yield env, client
    finally:
        proc.terminate()
        proc.wait(10)


def _api(srv, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"X-API-KEY": key or srv.api_key}, timeout=300)


def _run(srv, sandbox_id: str, cmd: str, key: str | None = None) -> str:
    from e2b import Sandbox

    os.environ.update(srv.env())
    return Sandbox.connect(sandbox_id, api_key=key or srv.api_key).commands.run(cmd, timeout=120).stdout


def _source(srv) -> tuple[str, str, str]:
    """A sandbox with files to keep, its snapshot, and what CHECK shows of it."""
    with _api(srv) as c:
        sid = c.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300,
                                             "metadata": {"from": "host-a"}}).json()["sandboxID"]
        _run(srv, sid, SETUP)
        r = c.post(f"/sandboxes/{sid}/snapshots", json={"name": "carried"})
        assert r.status_code == 201, r.text
    return sid, r.json()["snapshotID"], _run(srv, sid, CHECK)


def _carry(src, dst, tmp_path) -> None:
    """Export from `src`, import into `dst`, start there; then clean both up."""
    fp_a, fp_b = Footprint(src.home), Footprint(dst.home)
    sid, ref, expected = _source(src)
    with _api(src) as a, _api(dst) as b:
        r = a.post(f"/snapshots/{ref}/export")
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["layers"] >= 1 and first["uploaded"] == first["layers"]
        assert a.post(f"/snapshots/{ref}/export").json()["uploaded"] == 0  # content-addressed: once
        exported_id = first["exportID"]
        assert exported_id == _internal_id(src, "carried")
        r = b.post("/snapshots/import", json={"snapshotID": exported_id})
        assert r.status_code == 201, r.text
        assert r.json()["snapshotID"] == "carried:default"
        r = b.post("/v2/sandboxes", json={"templateID": "carried", "timeout": 120})
        assert r.status_code == 201, r.text
        child = r.json()["sandboxID"]
        assert _run(dst, child, CHECK) == expected
        assert b.get(f"/sandboxes/{child}").json()["metadata"] == {"from": "host-a"}
        for c, s, snap in ((a, sid, ref), (b, child, "carried")):
            assert c.delete(f"/sandboxes/{s}").status_code == 204
            assert c.delete(f"/templates/{snap}").status_code == 204
    for fp in (fp_a, fp_b):
        left = fp.resources()
        assert not left["layers"] and not left["dirs"], left


def _internal_id(srv, name: str) -> str:
    import sqlite3

    with sqlite3.connect(srv.home / "state.db") as db:
        return db.execute("SELECT id FROM snapshots WHERE name=?", (name,)).fetchone()[0]


@pytest.fixture
def two_hosts(tmp_path):
    servers = []

    def start(name: str, env: dict, pool_size: int = 0):
        srv = start_server(tmp_path / name, pool_size=pool_size, extra_env=env)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def test_through_an_s3_bucket(s3, two_hosts, tmp_path):
    env, client = s3
    env = {**env, "SANDLOT_STORAGE": "s3://sandlot-snapshots/exports"}
    a, b = two_hosts("a", env), two_hosts("b", env)
    _carry(a, b, tmp_path)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="sandlot-snapshots")["Contents"]]
    assert any(k.startswith("exports/layers/") for k in keys) and any(k.endswith("manifest.json") for k in keys)

    # a layer altered in the bucket is refused by a host that does not have it
    sid, ref, _ = _source(a)
    with _api(a) as c:
        c.post(f"/snapshots/{ref}/export")
        snap = _internal_id(a, "carried")
        layer = next(k for k in (o["Key"] for o in client.list_objects_v2(Bucket="sandlot-snapshots")["Contents"])
                     if k.startswith("exports/layers/") and _layer_of(a, snap) in k)
        body = client.get_object(Bucket="sandlot-snapshots", Key=layer)["Body"].read()
        client.put_object(Bucket="sandlot-snapshots", Key=layer, Body=_tampered(body, tmp_path))
        fresh = two_hosts("c", env)
        with _api(fresh) as f:
            r = f.post("/snapshots/import", json={"snapshotID": snap})
            assert r.status_code == 400 and "does not match its digest" in r.json()["message"], r.text
        left = Footprint(fresh.home).resources()
        assert not left["layers"], left
        c.delete(f"/sandboxes/{sid}")
        c.delete(f"/templates/{ref}")


def _layer_of(srv, snap_id: str) -> str:
    import json
    import sqlite3

    with sqlite3.connect(srv.home / "state.db") as db:
        stack = json.loads(db.execute("SELECT stack FROM snapshots WHERE id=?", (snap_id,)).fetchone()[0])
    return stack["layers"][-1].split(":", 1)[1]


def _tampered(archive: bytes, tmp_path) -> bytes:
    """The same archive with one byte of one file changed."""
    import io
    import tarfile

    src = tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as dst:
        changed = False
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if data and not changed:
                data = bytes([data[0] ^ 1]) + data[1:]
                changed = True
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    assert changed
    return out.getvalue()


def test_through_a_shared_directory(two_hosts, tmp_path):
    env = {"SANDLOT_STORAGE": str(tmp_path / "shared")}
    _carry(two_hosts("a", env), two_hosts("b", env), tmp_path)



def _forged(shared, digest: str, members) -> str:
    """A snapshot in the storage at `shared` whose one layer is an archive of `members` (name, type,
    mode, link target, pax headers); its export id."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, link, pax in members:
            m = tarfile.TarInfo(name)
            m.type, m.mode, m.linkname, m.pax_headers = kind, mode, link, pax
            m.size = 1 if kind == tarfile.REGTYPE else 0
            tar.addfile(m, io.BytesIO(b"x") if m.size else None)
    return _forged_raw(shared, digest, out.getvalue())


def _forged_raw(shared, digest: str, archive: bytes) -> str:
    """A snapshot in the storage at `shared` whose one layer (`digest`, hex) is `archive`; its export id."""
    (shared / "layers").mkdir(parents=True, exist_ok=True)
    (shared / "layers" / f"{digest}.tar.gz").write_bytes(archive)
    snap = "snap" + digest[:16]
    _manifest(shared, snap, _valid(snap, {"layers": [f"sha256:{digest}"]}))
    return snap


def test_a_forged_archive_reaches_no_host_file(two_hosts, tmp_path):
    """Archives in storage a host did not write: one naming a path twice (a setuid file, then a
    symlink to a host file), one with an xattr on a symlink. Each import is refused (400, not a
    500), and what the host does after extracting (modes, times) never goes through the symlink."""
    import tarfile

    victim = tmp_path / "victim"
    victim.write_text("host file")
    os.chmod(victim, 0o600)
    shared = tmp_path / "shared"
    root = (".", tarfile.DIRTYPE, 0o755, "", {})
    twice = _forged(shared, "ab" * 32, [root, ("f", tarfile.REGTYPE, 0o4777, "", {}),
                                         ("./f", tarfile.SYMTYPE, 0o777, str(victim), {})])
    xattr = _forged(shared, "cd" * 32, [root, ("l", tarfile.SYMTYPE, 0o777, str(victim),
                                               {"SANDLOT.xattr.user.forged": "eA=="})])
    srv = two_hosts("a", {"SANDLOT_STORAGE": str(shared)})
    with _api(srv) as c:
        for snap in (twice, xattr):
            r = c.post("/snapshots/import", json={"snapshotID": snap})
            assert r.status_code == 400, r.text
    st = os.stat(victim)
    assert stat.S_IMODE(st.st_mode) == 0o600 and not os.listxattr(victim), oct(st.st_mode)
    left = Footprint(srv.home).resources()
    assert not left["layers"], left


def test_a_snapshot_as_deep_as_a_copy_allows_is_carried(two_hosts, tmp_path):
    """A tree 990 directories deep (a layer copy takes up to 1000): its export walked it by
    recursion and failed with a 500 (RecursionError); it is carried whole."""
    env = {"SANDLOT_STORAGE": str(tmp_path / "shared")}
    a, b = two_hosts("a", env), two_hosts("b", env)
    deep = "/".join(["d"] * 990)
    try:
        with _api(a) as api_a, _api(b) as api_b:
            sid = api_a.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300}).json()["sandboxID"]
            _run(a, sid, f"cd /home/user && mkdir -p {deep} && echo bottom > {deep}/f")
            r = api_a.post(f"/sandboxes/{sid}/snapshots", json={"name": "deep"})
            assert r.status_code == 201, r.text
            r = api_a.post(f"/snapshots/{r.json()['snapshotID']}/export")
            assert r.status_code == 200, r.text
            r = api_b.post("/snapshots/import", json={"snapshotID": r.json()["exportID"]})
            assert r.status_code == 201, r.text
            child = api_b.post("/v2/sandboxes", json={"templateID": "deep", "timeout": 120}).json()["sandboxID"]
            assert _run(b, child, f"cat /home/user/{deep}/f") == "bottom\n"
            for api, s, snap in ((api_a, sid, "deep"), (api_b, child, "deep")):
                assert api.delete(f"/sandboxes/{s}").status_code == 204
                assert api.delete(f"/templates/{snap}").status_code == 204
    finally:
        # a layer left by a failure is deeper than pytest's (recursive) clean-up of old temp dirs
        # can remove: every later session would end in a RecursionError. rm walks it iteratively.
        for srv in (a, b):
            srv.stop()
        subprocess.run(["rm", "-rf", str(tmp_path / "a"), str(tmp_path / "b")], check=True)


DIGEST = "sha256:" + "ab" * 32


def _manifest(shared, snap: str, manifest) -> None:
    """`manifest` (bytes as they are, or anything JSON) as the export `snap` in the storage at `shared`."""
    import json

    (shared / "snapshots" / snap).mkdir(parents=True, exist_ok=True)
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    (shared / "snapshots" / snap / "manifest.json").write_bytes(raw)


def _valid(snap: str, stack: dict | None = None, **changes) -> dict:
    """A manifest as export() writes it (of a stack of no layers: the base template), with `changes`."""
    return {"format": 1, "id": snap, "team": "t", "name": None, "metadata": {}, "template": {"name": "base"},
            "stack": {"template": "base", "layers": [], "envs": {}, **(stack or {})}, **changes}


# manifests a writer of the storage may leave (snapshot id -> manifest); each import must be a 400
HOSTILE = {
    "a JSON list": lambda s: [s],
    "a JSON string": lambda s: s,
    "no stack": lambda s: {k: v for k, v in _valid(s).items() if k != "stack"},
    "a stack that is a string": lambda s: {**_valid(s), "stack": "base"},
    "layers that are a string": lambda s: _valid(s, {"layers": DIGEST}),
    "layers that are an object": lambda s: _valid(s, {"layers": {DIGEST: 1}}),
    "a layer that is a number": lambda s: _valid(s, {"layers": [1]}),
    "a layer outside the store": lambda s: _valid(s, {"layers": ["sha256:../../../../etc"]}),
    "more layers than a stack has": lambda s: _valid(s, {"layers": [DIGEST] * 17}),
    "no template": lambda s: _valid(s, {"template": None}),
    "a template that is a list": lambda s: _valid(s, {"template": ["base"]}),
    "a template that is a path": lambda s: _valid(s, {"template": "../../../etc/passwd"}),
    "a template described by a string": lambda s: _valid(s, template="base"),
    "env vars that are a string": lambda s: _valid(s, {"envs": "A=1"}),
    "an env var named with '='": lambda s: _valid(s, {"envs": {"A=B": "1"}}),
    "an env var holding NUL": lambda s: _valid(s, {"envs": {"A": "1\0"}}),
    "metadata that is a list": lambda s: _valid(s, metadata=["a"]),
    "metadata of numbers": lambda s: _valid(s, metadata={"a": 1}),
    "metadata no response can carry": lambda s: _valid(s, metadata={"a": "\udc80"}),
    "a name that is a number": lambda s: _valid(s, name=5),
    "a name that is a path": lambda s: _valid(s, name="../x"),
    "another export's id": lambda s: _valid("snap" + "z" * 16),
    "an unknown format": lambda s: _valid(s, format=2),
    "not JSON": lambda s: b"{",
    "JSON nested past the parser": lambda s: b"[" * 100000 + b"]" * 100000,
    "more than a manifest holds": lambda s: _valid(s, metadata={"big": "x" * (9 << 20)}),
}


def _snap_id(label: str) -> str:
    import hashlib

    return "snap" + hashlib.sha256(label.encode()).hexdigest()[:16]


def test_a_hostile_manifest_is_refused_with_a_400(two_hosts, tmp_path):
    """Manifests of any shape (gap: each was used as-is: 500s, a snapshot of another export's id, a
    metadata value no response can carry), and storage entries that are not files: a manifest or a
    layer archive linked to a host file, a fifo (the import blocked on it for ever). Each import is
    a 400 saying why, the server logs no traceback and keeps no layer or temporary file."""
    import json

    shared = tmp_path / "shared"
    srv = two_hosts("a", {"SANDLOT_STORAGE": str(shared)})
    cases = {}
    for label, make in HOSTILE.items():
        cases[label] = snap = _snap_id(label)
        _manifest(shared, snap, make(snap))

    # a host file that is a valid manifest, and one that is a valid archive of the layer it names
    host = tmp_path / "host"
    host.mkdir()
    digest = _layer_archive(tmp_path, host / "layer.tar.gz")
    (host / "manifest.json").write_text(json.dumps(_valid(_snap_id("linked manifest"))))
    cases["a manifest linked to a host file"] = snap = _snap_id("linked manifest")
    (shared / "snapshots" / snap).mkdir(parents=True)
    (shared / "snapshots" / snap / "manifest.json").symlink_to(host / "manifest.json")
    cases["a layer linked to a host file"] = snap = _snap_id("linked layer")
    _manifest(shared, snap, _valid(snap, {"layers": [digest]}))
    (shared / "layers").mkdir(exist_ok=True)
    (shared / "layers" / f"{digest.split(':')[1]}.tar.gz").symlink_to(host / "layer.tar.gz")
    cases["a manifest that is a fifo"] = snap = _snap_id("fifo")
    (shared / "snapshots" / snap).mkdir(parents=True)
    os.mkfifo(shared / "snapshots" / snap / "manifest.json")

    failures = []
    with _api(srv) as c:
        _manifest(shared, _snap_id("valid"), _valid(_snap_id("valid"), name="valid"))  # the baseline: taken
        r = c.post("/snapshots/import", json={"snapshotID": _snap_id("valid")})
        assert r.status_code == 201, r.text
        for label, snap in cases.items():
            try:
                r = httpx.post(f"{srv.url}/snapshots/import", json={"snapshotID": snap}, timeout=30,
                               headers={"X-API-KEY": srv.api_key})  # its own connection: a 500 closes one
            except httpx.HTTPError as e:
                failures.append(f"{label}: no answer ({type(e).__name__})")
                continue
            if r.status_code != 400 or not r.json().get("message"):
                failures.append(f"{label}: {r.status_code} {r.text[:200]}")
        r = httpx.get(f"{srv.url}/snapshots", headers={"X-API-KEY": srv.api_key})
        if r.status_code != 200 or [s["snapshotID"] for s in r.json()] != ["valid:default"]:
            failures.append(f"snapshots made: {r.status_code} {r.text[:300]}")

        # the storage's directories are reached without following links: an export writes nowhere else
        outside = tmp_path / "outside"
        outside.mkdir()
        (shared / "snapshots").rename(tmp_path / "snapshots-moved")
        (shared / "snapshots").symlink_to(outside)
        r = c.post("/snapshots/valid/export")
        if r.status_code == 200 or any(outside.iterdir()):
            failures.append(f"an export through a linked directory: {r.status_code}, wrote {list(outside.iterdir())}")
        assert c.delete("/templates/valid").status_code == 204
    assert not failures, "\n".join(failures)
    assert not tracebacks(srv.log.read_text(errors="replace"))
    left = Footprint(srv.home).resources()
    assert not left["layers"], left
    assert not [p for p in (srv.home / "layers").iterdir() if p.name.startswith(".transfer-")]


def _layer_archive(tmp_path, dest) -> str:
    """An archive at `dest` of a small layer, as export() writes one; its digest."""
    from sandlot.layers import archive
    from sandlot.layers.tree import copy_tree

    src = tmp_path / "layer-src"
    src.mkdir()
    (src / "hello").write_text("from a host file")
    result = copy_tree(src, tmp_path / "layer-tree", 0)
    archive.write(tmp_path / "layer-tree", dest)
    return result.digest


def test_a_layer_of_this_host_is_reused_only_for_its_own_team(two_hosts, tmp_path):
    """A manifest may name any digest, another team's private layer among them (gap: a layer on the
    host was reused whenever it existed, so whoever could write the storage and knew a digest gave
    any team a snapshot of it). A layer the importing team holds is reused without a download, if
    the storage has its archive; any other is downloaded and checked like a layer the host lacks."""
    shared = tmp_path / "shared"
    srv = two_hosts("a", {"SANDLOT_STORAGE": str(shared)})
    red, blue = team_key(srv)[2], team_key(srv)[2]
    with _api(srv, red) as r_api, _api(srv, blue) as b_api:
        sid = r_api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300}).json()["sandboxID"]
        _run(srv, sid, "echo red-secret > /home/user/secret", red)
        assert r_api.post(f"/sandboxes/{sid}/snapshots", json={"name": "secret"}).status_code == 201
        snap = _internal_id(srv, "secret")
        digest = "sha256:" + _layer_of(srv, snap)
        archive = shared / "layers" / f"{digest.split(':')[1]}.tar.gz"
        forged = "snap" + "f" * 16  # written by someone who can write the storage and knows the digest
        _manifest(shared, forged, _valid(forged, {"layers": [digest]}))

        # the storage has no archive of it: nobody gets it, its own team neither
        for api in (b_api, r_api):
            r = api.post("/snapshots/import", json={"snapshotID": forged})
            assert r.status_code == 404 and "is not in" in r.json()["message"], r.text

        # red's export: red's import of it reuses red's layer (the archive is not even read: damaged
        # here), blue's import of the forged manifest downloads the archive and refuses it
        assert r_api.post(f"/snapshots/{snap}/export").status_code == 200
        real = archive.read_bytes()
        archive.write_bytes(_tampered(real, tmp_path))
        r = r_api.post("/snapshots/import", json={"snapshotID": snap, "name": "again"})
        assert r.status_code == 201, r.text
        r = b_api.post("/snapshots/import", json={"snapshotID": forged})
        assert r.status_code == 400 and "does not match its digest" in r.json()["message"], r.text
        assert b_api.get("/snapshots").json() == []

        # with the real archive in storage the content is the storage's anyway: blue gets it, checked
        archive.write_bytes(real)
        r = b_api.post("/snapshots/import", json={"snapshotID": forged, "name": "copy"})
        assert r.status_code == 201, r.text

        assert r_api.delete(f"/sandboxes/{sid}").status_code == 204
        for api, name in ((r_api, "secret"), (r_api, "again"), (b_api, "copy")):
            assert api.delete(f"/templates/{name}").status_code == 204
    assert not tracebacks(srv.log.read_text(errors="replace"))
    left = Footprint(srv.home).resources()
    assert not left["layers"], left


def _bad_archives() -> dict[str, tuple[bytes, int]]:
    """Layer archives write() never makes, each with the status its import must get: damaged ones,
    and ones that would make the server hold what they say (each header, every member, the disk)."""
    import gzip
    import io
    import tarfile

    def tar(*members, fmt=tarfile.PAX_FORMAT, **options) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz", format=fmt, **options) as t:
            root = tarfile.TarInfo(".")
            root.type, root.mode = tarfile.DIRTYPE, 0o755
            t.addfile(root)
            for m in members:
                t.addfile(m, io.BytesIO(b"x" * m.size) if m.size else None)
        return out.getvalue()

    def member(name: str, **fields) -> tarfile.TarInfo:
        m = tarfile.TarInfo(name)
        m.mode = 0o644
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    def header(kind: bytes, size: int, body: bytes = b"") -> bytes:
        h = member("././@PaxHeader", type=kind, size=size)
        return h.tobuf(tarfile.GNU_FORMAT) + body + b"\0" * (-len(body) % 512)

    record = b"11 foo=bar\n"
    good = tar(member("f", size=1))
    return {
        "not gzip": (b"layer" * 100, 400),
        "a truncated gzip stream": (good[:len(good) // 2], 400),
        "a time past what the host can store": (tar(member("f", size=1, pax_headers={
            "SANDLOT.mtime_ns": "1" + "0" * 30})), 400),
        "a hard link to no file": (tar(member("h", type=tarfile.LNKTYPE, linkname="nothing")), 400),
        "thousands of chained headers": (gzip.compress(header(tarfile.XHDTYPE, len(record), record) * 5000
                                                       + member("f").tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024), 400),
        "a header of 8 GiB": (gzip.compress(header(tarfile.XHDTYPE, 8 << 30) + b"\0" * 4096), 400),
        "a global header": (tar(member("f", size=1), pax_headers={"comment": "x"}), 400),
        "a sparse file": (tar(member("s", type=tarfile.GNUTYPE_SPARSE, size=1), fmt=tarfile.GNU_FORMAT), 400),
        "a file larger than the disk": (gzip.compress(member("big", size=1 << 50).tobuf(tarfile.GNU_FORMAT)), 429),
    }


def test_an_archive_that_is_damaged_or_unbounded_is_refused(two_hosts, tmp_path):
    """Archives in storage a host did not write, damaged (gap: a 500 for each of not gzip, a
    truncated stream, a time out of range, a hard link to nothing, headers chained past the
    recursion limit) or asking for more than the server should give: a header tarfile reads into
    memory whole, a global header every member copies, a sparse map, more data than the disk has.
    Each is refused with a 4xx before it is held, and leaves nothing behind."""
    import hashlib

    shared = tmp_path / "shared"
    cases = {label: (_forged_raw(shared, hashlib.sha256(label.encode()).hexdigest(), raw), status)
             for label, (raw, status) in _bad_archives().items()}
    srv = two_hosts("a", {"SANDLOT_STORAGE": str(shared)})
    failures = []
    for label, (snap, status) in cases.items():
        try:
            r = httpx.post(f"{srv.url}/snapshots/import", json={"snapshotID": snap}, timeout=60,
                           headers={"X-API-KEY": srv.api_key})
        except httpx.HTTPError as e:
            failures.append(f"{label}: no answer ({type(e).__name__})")
            continue
        if r.status_code != status:
            failures.append(f"{label}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert not tracebacks(srv.log.read_text(errors="replace"))
    left = Footprint(srv.home).resources()
    assert not left["layers"], left
    assert not [p for p in (srv.home / "layers").iterdir() if p.name.startswith(".transfer-")]


def test_an_import_under_a_warm_snapshots_name_empties_its_pool(two_hosts, tmp_path):
    """An import named as a snapshot of the team replaces its content, as a snapshot taken under
    that name does (gap: the old content's warm sandboxes stayed in its pool, and a create by the
    name got one of them: the files the import replaced)."""
    srv = two_hosts("a", {"SANDLOT_STORAGE": str(tmp_path / "shared"), "SANDLOT_POOL_TEMPLATES": ""}, pool_size=1)
    with _api(srv) as c:
        sid = c.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300}).json()["sandboxID"]
        _run(srv, sid, "echo one > /home/user/v")
        assert c.post(f"/sandboxes/{sid}/snapshots", json={"name": "w", "warm": True}).status_code == 201
        _run(srv, sid, "echo two > /home/user/v")
        assert c.post(f"/sandboxes/{sid}/snapshots", json={"name": "two"}).status_code == 201
        export = c.post("/snapshots/two/export").json()["exportID"]
        warm = _internal_id(srv, "w")
        deadline = time.monotonic() + 60
        while f'sandlot_pool_ready{{template="{warm}"}} 1.0' not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the warm snapshot's pool did not fill"
            time.sleep(0.2)
        r = c.post("/snapshots/import", json={"snapshotID": export, "name": "w"})
        assert r.status_code == 201 and _internal_id(srv, "w") == warm, r.text
        child = c.post("/v2/sandboxes", json={"templateID": "w", "timeout": 60}).json()["sandboxID"]
        assert _run(srv, child, "cat /home/user/v") == "two\n"
        for s in (sid, child):
            assert c.delete(f"/sandboxes/{s}").status_code == 204
        for name in ("w", "two"):
            assert c.delete(f"/templates/{name}").status_code == 204
