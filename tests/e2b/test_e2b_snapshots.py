"""Snapshots and fork through the official SDK (sync and async): files kept exactly, metadata and
env vars, names, listing, deletion, fork's children, and no layer left once everything is gone."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox, SandboxException, SandboxNotFoundException
from e2b_support import SDK_VERSION, assert_json_error
from support import kill_quietly, unique
from packaging.version import Version

pytestmark = pytest.mark.skipif(SDK_VERSION < Version("2.34"), reason="fork and snapshots need e2b >= 2.34")

# Every entry under the given roots, as a snapshot must keep it (python3 is in every template).
MANIFEST = r'''
import hashlib, json, os, stat, sys
out = {}
for root in sys.argv[1:]:
    for dirpath, dirs, files in os.walk(root):
        for name in [""] + sorted(dirs + files):
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            e = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
                 "xattrs": {k: os.getxattr(p, k, follow_symlinks=False).hex()
                            for k in sorted(os.listxattr(p, follow_symlinks=False)) if k.startswith("user.")}}
            if not stat.S_ISDIR(st.st_mode):
                e["mtime"] = st.st_mtime_ns
            if stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                e["sha"] = hashlib.sha256(open(p, "rb").read()).hexdigest()
            out[p] = e
print(json.dumps(out))
'''
ROOTS = "/home/user/work /opt/made"

SETUP = r'''
set -e
mkdir -p /home/user/work/sub
cd /home/user/work
printf 'hello' > a.txt && chmod 640 a.txt
ln a.txt hard.txt
ln -s a.txt rel-link && ln -s /etc/hostname abs-link
mkfifo pipe
head -c 3000000 /dev/urandom > random.bin
python3 -c "import os; os.setxattr('a.txt', 'user.e2b.owner', b'me')"
truncate -s 40M sparse.bin
touch -d '2001-02-03 04:05:06.123456789' sub/old
sudo mkdir -p /opt/made && sudo sh -c 'echo root > /opt/made/rootfile && chmod 4750 /opt/made/rootfile'
sudo chown 1234:4321 /opt/made
sudo rm /etc/motd
'''


def manifest(sbx) -> dict:
    sbx.files.write("/tmp/manifest.py", MANIFEST)
    return json.loads(sbx.commands.run(f"sudo python3 /tmp/manifest.py {ROOTS}").stdout)


def layer_dirs(server) -> list[str]:
    root = server.home / "layers"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(("layers.db", ".lock"))) \
        if root.exists() else []


@pytest.fixture
def made(sdk_env):
    """Sandboxes and snapshots made by a test, all removed when it ends (then no layer may stay)."""
    sandboxes, snapshots = [], []
    yield sandboxes, snapshots
    for sbx in sandboxes:
        kill_quietly(sbx)
    for snap in snapshots:
        Sandbox.delete_snapshot(snap)


def test_a_snapshot_keeps_files_metadata_and_env_exactly(made, sdk_env):
    sandboxes, snapshots = made
    src = Sandbox.create(timeout=300, envs={"SNAP_ENV": "kept"}, metadata={"origin": "snap-test"})
    sandboxes.append(src)
    src.commands.run(SETUP)
    before = manifest(src)
    info = src.create_snapshot()
    snapshots.append(info.snapshot_id)
    src.files.write("/home/user/work/after.txt", "not in the snapshot")

    child = Sandbox.create(info.snapshot_id, timeout=120, metadata={"extra": "1"})
    sandboxes.append(child)
    assert manifest(child) == before
    r = child.commands.run("echo $SNAP_ENV; test -e /etc/motd || echo motd-gone; "
                           "test -e /home/user/work/after.txt || echo after-absent")
    assert r.stdout.split() == ["kept", "motd-gone", "after-absent"]
    assert child.get_info().metadata == {"origin": "snap-test", "extra": "1"}
    # the holes stayed holes: 40 MB apparent, almost nothing on disk
    du = child.commands.run("du -k /home/user/work/sparse.bin | cut -f1").stdout.strip()
    assert int(du) < 1024
    # the child writes its own layer; the source never sees it
    child.files.write("/home/user/work/a.txt", "child's")
    assert src.files.read("/home/user/work/a.txt") == "hello"


def test_named_snapshots_list_replace_and_delete(made, sdk_env, server):
    sandboxes, snapshots = made
    name = unique("snap")
    sbx = Sandbox.create(timeout=300)
    sandboxes.append(sbx)
    sbx.files.write("/home/user/v.txt", "one")
    first = sbx.create_snapshot(name=name)
    snapshots.append(first.snapshot_id)
    assert first.snapshot_id == f"{name}:default" and first.names == [f"{name}:default"]
    sbx.files.write("/home/user/v.txt", "two")
    second = Sandbox.create_snapshot(sbx.sandbox_id, name=name)  # the class method, by id
    assert second.snapshot_id == first.snapshot_id  # a new build of the same name

    for ref in (name, f"{name}:default"):
        c = Sandbox.create(ref, timeout=60)
        sandboxes.append(c)
        assert c.files.read("/home/user/v.txt") == "two"

    unnamed = sbx.create_snapshot()
    snapshots.append(unnamed.snapshot_id)
    mine = [s.snapshot_id for s in sbx.list_snapshots().next_items()]
    assert set(mine) == {first.snapshot_id, unnamed.snapshot_id}
    by_name = Sandbox.list_snapshots(name=name).next_items()
    assert [s.snapshot_id for s in by_name] == [first.snapshot_id]
    assert Sandbox.list_snapshots(name=unique("nope")).next_items() == []
    paged = Sandbox.list_snapshots(sandbox_id=sbx.sandbox_id, limit=1)
    seen = []
    while paged.has_next:
        seen += [s.snapshot_id for s in paged.next_items()]
    assert sorted(seen) == sorted(mine)

    assert Sandbox.delete_snapshot(first.snapshot_id) is True
    assert Sandbox.delete_snapshot(first.snapshot_id) is False
    snapshots.remove(first.snapshot_id)
    with pytest.raises(SandboxException):
        Sandbox.create(name, timeout=60)
    # sandboxes made from it keep running on its layers
    assert sandboxes[1].files.read("/home/user/v.txt") == "two"


def test_fork_gives_independent_children_of_that_instant(made, sdk_env):
    sandboxes, _ = made
    parent = Sandbox.create(timeout=300, envs={"P": "parent"})
    sandboxes.append(parent)
    parent.files.write("/home/user/state.txt", "at fork")
    parent.commands.run("sleep 300", background=True)
    kids = parent.fork(count=2, timeout=120)
    sandboxes.extend(kids)
    assert len(kids) == 2 and all(isinstance(k, Sandbox) for k in kids)
    ids = {parent.sandbox_id, *(k.sandbox_id for k in kids)}
    assert len(ids) == 3
    parent.files.write("/home/user/state.txt", "parent moved on")
    kids[0].files.write("/home/user/state.txt", "kid 0")
    assert kids[1].files.read("/home/user/state.txt") == "at fork"
    assert parent.files.read("/home/user/state.txt") == "parent moved on"
    assert kids[1].commands.run("echo $P").stdout.strip() == "parent"
    # files, not processes: the parent's sleep was not cloned
    assert not [p for p in kids[1].commands.list() if "sleep" in " ".join([p.cmd, *p.args])]
    # children have their own lifetimes: the requested timeout, not the parent's
    end = kids[0].get_info().end_at.timestamp()
    assert 60 < end - time.time() <= 121
    kids[0].kill()
    assert parent.is_running() and kids[1].is_running()

    by_id = Sandbox.fork(parent.sandbox_id)  # the class form; E2B's default count 1
    sandboxes.extend(by_id)
    assert len(by_id) == 1 and by_id[0].files.read("/home/user/state.txt") == "parent moved on"


def test_fork_and_snapshot_errors(sdk_env, server):
    with pytest.raises(SandboxNotFoundException):
        Sandbox.create_snapshot("inotasandbox0000000")
    with pytest.raises(SandboxNotFoundException):
        Sandbox.fork("inotasandbox0000000")
    headers = {"X-API-KEY": server.api_key}
    r = httpx.post(f"{server.url}/sandboxes/inotasandbox0000000/fork", json={"count": 0}, headers=headers)
    assert_json_error(r, 400)
    r = httpx.post(f"{server.url}/sandboxes/inotasandbox0000000/snapshots", json={"name": "bad name!"},
                   headers=headers)
    assert_json_error(r, 400)
    r = httpx.post(f"{server.url}/sandboxes/inotasandbox0000000/snapshots", json={"name": "base"},
                   headers=headers)
    assert_json_error(r, 400)  # a template's name
    r = httpx.delete(f"{server.url}/templates/{unique('nosuch')}", headers=headers)
    assert_json_error(r, 404)


async def test_async_snapshot_fork_and_create(made, sdk_env):
    sandboxes, snapshots = made
    src = await AsyncSandbox.create(timeout=300)
    try:
        await src.files.write("/home/user/async.txt", "from async")
        info = await src.create_snapshot(name=unique("asnap"))
        snapshots.append(info.snapshot_id)
        listed = await (AsyncSandbox.list_snapshots(sandbox_id=src.sandbox_id)).next_items()
        assert [s.snapshot_id for s in listed] == [info.snapshot_id]
        child = await AsyncSandbox.create(info.snapshot_id, timeout=60)
        kids = await src.fork(count=1, timeout=60)
        try:
            assert await child.files.read("/home/user/async.txt") == "from async"
            assert await kids[0].files.read("/home/user/async.txt") == "from async"
        finally:
            for s in (child, *kids):
                await s.kill()
        assert await AsyncSandbox.delete_snapshot(info.snapshot_id) is True
        snapshots.remove(info.snapshot_id)
    finally:
        await src.kill()


def test_no_layer_stays_once_everything_is_deleted(sdk_env, server):
    """Runs after the others of this module: they removed what they made."""
    sbx = Sandbox.create(timeout=120)
    sbx.files.write("/home/user/x", "x")
    snap = sbx.create_snapshot()
    kid = sbx.fork()[0]
    assert len(layer_dirs(server)) == 1  # one commit, shared by the snapshot and the child
    Sandbox.delete_snapshot(snap.snapshot_id)
    assert len(layer_dirs(server)) == 1  # the child still runs on it
    kid.kill()
    assert layer_dirs(server) == []
    sbx.kill()
    with open("/proc/self/mountinfo") as f:
        assert str(server.home / "layers") not in f.read()


def test_a_warm_snapshot_keeps_a_pool(made, sdk_env, server):
    """`"warm": true` (sandlot's extension): sandboxes on the snapshot's stack wait ready, and a
    create by its name takes one, with the snapshot's files and env vars."""
    sandboxes, snapshots = made
    src = Sandbox.create(timeout=300, envs={"WARM": "yes"})
    sandboxes.append(src)
    src.files.write("/home/user/warm.txt", "pooled")
    name = unique("warm")
    r = httpx.post(f"{server.url}/sandboxes/{src.sandbox_id}/snapshots", json={"name": name, "warm": True},
                   headers={"X-API-KEY": server.api_key})
    assert r.status_code == 201, r.text
    snapshots.append(r.json()["snapshotID"])
    snap_id = _internal_id(server, name)
    # The pool is its ready sandboxes as the server counts them; a sandbox is the pool's by the
    # template its runtime state names (other pools refill meanwhile, and a pool sandbox's
    # directory appears before it is warm).
    deadline = time.monotonic() + 60
    while _pool_ready(server, snap_id) < 2:
        assert time.monotonic() < deadline, "the snapshot's pool did not fill"
        time.sleep(0.2)
    pooled = _sandboxes_of(server, snap_id)
    assert len(pooled) == 2
    child = Sandbox.create(name, timeout=60)
    sandboxes.append(child)
    assert child.sandbox_id in pooled
    assert child.commands.run("cat /home/user/warm.txt; echo \" $WARM\"").stdout == "pooled yes\n"
    assert child.get_info().template_id == snap_id
    # deleting the snapshot empties its pool: no sandbox is left on a deleted snapshot's layers
    Sandbox.delete_snapshot(r.json()["snapshotID"])
    snapshots.remove(r.json()["snapshotID"])
    deadline = time.monotonic() + 30
    while _sandboxes_of(server, snap_id) - {child.sandbox_id}:
        assert time.monotonic() < deadline, "the deleted snapshot's pool stayed"
        time.sleep(0.2)
    assert _pool_ready(server, snap_id) == 0


def _pool_ready(server, template: str) -> float:
    # read by hand: this suite also runs in a venv of the old SDK alone, without prometheus_client
    metrics = httpx.get(f"{server.url}/metrics", headers={"X-API-KEY": server.api_key}).text
    sample = f'sandlot_pool_ready{{template="{template}"}} '
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(sample))


def _sandboxes_of(server, template: str) -> set[str]:
    """The sandboxes whose runtime state names `template` (one being made or removed is skipped)."""
    found = set()
    for d in (server.home / "sandboxes").iterdir():
        try:
            state = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("template") == template:
            found.add(d.name)
    return found


def _internal_id(server, name: str) -> str:
    import sqlite3

    with sqlite3.connect(server.home / "state.db") as db:
        return db.execute("SELECT id FROM snapshots WHERE name=?", (name,)).fetchone()[0]


def test_snapshot_and_kill_at_once(sdk_env, server):
    """A kill while a snapshot copies waits for it; neither answers 500."""
    import concurrent.futures

    sbx = Sandbox.create(timeout=120)
    sbx.commands.run("head -c 50000000 /dev/urandom > /home/user/big.bin")
    headers = {"X-API-KEY": server.api_key}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        snap = pool.submit(httpx.post, f"{server.url}/sandboxes/{sbx.sandbox_id}/snapshots", json={},
                           headers=headers, timeout=120)
        time.sleep(0.05)
        kill = pool.submit(httpx.delete, f"{server.url}/sandboxes/{sbx.sandbox_id}", headers=headers, timeout=120)
        s, k = snap.result(), kill.result()
    assert k.status_code == 204, k.text
    assert s.status_code in (201, 404), s.text
    if s.status_code == 201:
        assert Sandbox.delete_snapshot(s.json()["snapshotID"]) is True


def test_the_answers_say_files_not_processes(sdk_env, server):
    headers = {"X-API-KEY": server.api_key}
    sbx = Sandbox.create(timeout=60)
    try:
        # a null is the default, as an absent field (was a 500)
        r = httpx.post(f"{server.url}/sandboxes/{sbx.sandbox_id}/fork", json={"count": None, "timeout": None},
                       headers=headers, timeout=60)
        assert r.status_code == 201, r.text
        [entry] = r.json()
        assert entry["mode"] == "filesystem" and entry["sandbox"]["sandboxID"] != sbx.sandbox_id
        Sandbox.kill(entry["sandbox"]["sandboxID"])
        r = httpx.post(f"{server.url}/sandboxes/{sbx.sandbox_id}/snapshots", json={"memory": True},
                       headers=headers, timeout=60)
        assert r.status_code == 201 and r.json()["mode"] == "filesystem", r.text
        assert Sandbox.delete_snapshot(r.json()["snapshotID"]) is True
    finally:
        sbx.kill()
