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
from support import free_port, start_server

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


def _api(srv) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=300)


def _run(srv, sandbox_id: str, cmd: str) -> str:
    from e2b import Sandbox

    os.environ.update(srv.env())
    return Sandbox.connect(sandbox_id).commands.run(cmd, timeout=120).stdout


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

    def start(name: str, env: dict):
        srv = start_server(tmp_path / name, pool_size=0, extra_env=env)
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
    import json
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, link, pax in members:
            m = tarfile.TarInfo(name)
            m.type, m.mode, m.linkname, m.pax_headers = kind, mode, link, pax
            m.size = 1 if kind == tarfile.REGTYPE else 0
            tar.addfile(m, io.BytesIO(b"x") if m.size else None)
    (shared / "layers").mkdir(parents=True, exist_ok=True)
    (shared / "layers" / f"{digest}.tar.gz").write_bytes(out.getvalue())
    snap = "snap" + digest[:16]
    (shared / "snapshots" / snap).mkdir(parents=True)
    (shared / "snapshots" / snap / "manifest.json").write_text(json.dumps({
        "format": 1, "id": snap, "team": "t", "name": None, "metadata": {},
        "stack": {"template": "base", "layers": [f"sha256:{digest}"]}, "template": {"name": "base"}}))
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
