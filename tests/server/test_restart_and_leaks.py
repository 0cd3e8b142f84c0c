"""The server can die at any moment: nothing is leaked and nothing is forgotten."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from host_resources import Footprint, _cgroups, _uids
from sandlot.runtimes.namespace import mount_root
from sandlot.runtimes.uids import UID_FIRST, UID_RANGE
from support import start_server


def _api(server):
    return httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120)


def _create(client, **extra):
    r = client.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _run(server, sandbox_id, cmd):
    from e2b import Sandbox

    os.environ.update(server.env())
    return Sandbox.connect(sandbox_id).commands.run(cmd).stdout


def _state(home: Path, sandbox_id: str) -> dict:
    return json.loads((home / "sandboxes" / sandbox_id / "state.json").read_text())


def _start_ticks(pid: int) -> int | None:
    """When the process started; None once it is gone (or a zombie: dead, awaiting its reaper)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _pooled_ids(server, client) -> set[str]:
    """Warm sandboxes: the runtime has them, the API never listed them."""
    listed = {s["sandboxID"] for s in client.get("/v2/sandboxes").json()}
    return {p.parent.name for p in (server.home / "sandboxes").glob("*/state.json")
            if "pid" in json.loads(p.read_text())} - listed


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture
def private_server(tmp_path):
    servers = []

    def start(home=tmp_path / "home", port=None, pool_size=0, extra_env=None):
        srv = start_server(home, port=port, pool_size=pool_size, extra_env=extra_env)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def test_the_leak_checks_see_leaks(tmp_path):
    """The checks below are only worth something if they find what a broken server leaves: plant
    each kind of leftover for a fake server and look."""
    home = tmp_path / "home"
    (home / "sandboxes" / "ifake").mkdir(parents=True)
    slot = 4000  # far above what test servers use
    uid = UID_FIRST + slot * UID_RANGE
    fp = Footprint(home, slots={slot})
    mnt = mount_root(home)
    group = Path("/sys/fs/cgroup/pids") / fp.group / "ifake"
    other = Path("/sys/fs/cgroup/pids") / "sandlot-0therserver0" / "ifake"
    procs = []
    try:
        (mnt / "ifake" / "root").mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "leak", str(mnt / "ifake" / "root")], check=True)
        group.mkdir(parents=True)
        other.mkdir(parents=True)
        # a process of one of the server's uids in a network namespace of its own, outside cgroups
        netns = subprocess.Popen(["unshare", "--net", "setpriv", f"--reuid={uid}", f"--regid={uid}",
                                  "--clear-groups", "sleep", "60"])
        # a root process in one of the server's cgroups; one of the same uid in another server's group
        in_group = subprocess.Popen(["sleep", "60"])
        (group / "cgroup.procs").write_text(str(in_group.pid))
        theirs = subprocess.Popen(["sh", "-c", f"echo $$ > {other}/cgroup.procs; exec setpriv --reuid={uid} "
                                   f"--regid={uid} --clear-groups sleep 60"])
        procs = [netns, in_group, theirs]
        _wait(lambda: all(uid in _uids(p.pid) for p in (netns, theirs)), 10, "set-up")
        found = fp.resources()
        pids = {int(p.split()[0]) for p in found["processes"]}
        assert {netns.pid, in_group.pid} <= pids and theirs.pid not in pids, found
        assert any(f"held by {netns.pid}" in n for n in found["netns"]), found
        assert str(mnt / "ifake" / "root") in found["mounts"], found
        assert {str(home.resolve() / "sandboxes" / "ifake"), str(mnt / "ifake")} <= set(found["dirs"]), found
        assert str(group) in found["cgroups"], found
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["umount", str(mnt / "ifake" / "root")], capture_output=True)
        for d in (group, other, other.parent, group.parent):
            if d.is_dir():
                d.rmdir()
        subprocess.run(["rm", "-rf", str(mnt)], check=True)


def test_kill_9_then_restart_adopts_or_cleans_up(private_server, tmp_path):
    fp = Footprint(tmp_path / "home")  # before the server: its first sandboxes count as new
    srv = private_server(pool_size=1)
    port = int(srv.url.rsplit(":", 1)[1])
    with _api(srv) as c:
        keep = _create(c, metadata={"role": "keep"})["sandboxID"]  # may come from the warm pool
        paused = _create(c, metadata={"role": "paused"})["sandboxID"]
        lost = _create(c, metadata={"role": "lost"})["sandboxID"]
        _run(srv, keep, "echo persisted > /home/user/state.txt")
        _run(srv, paused, "echo frozen > /home/user/state.txt")
        assert c.post(f"/sandboxes/{paused}/pause").status_code == 204
        pooled = _wait(lambda: _pooled_ids(srv, c), 60, "the warm pool to refill")
        before = {sid: c.get(f"/sandboxes/{sid}").json() for sid in (keep, paused)}
        # not from the pool (env vars): the warm one must stay unclaimed
        expiring_id = _create(c, timeout=3, metadata={"role": "expiring"}, envVars={"A": "1"})["sandboxID"]
        fp.note_slots()
        assert expiring_id in {s["sandboxID"] for s in c.get("/v2/sandboxes").json()}
    srv.stop(signal.SIGKILL)
    states = {sid: _state(srv.home, sid) for sid in (lost, *pooled)}
    os.kill(states[lost]["pid"], signal.SIGKILL)  # while the server is down, one sandbox dies on its own
    with sqlite3.connect(srv.home / "state.db") as db:
        (deadline,) = db.execute("SELECT end_at FROM sandboxes WHERE id=?", (expiring_id,)).fetchone()
    time.sleep(max(0.0, deadline - time.time()) + 0.5)  # and one reaches its deadline

    srv2 = private_server(home=srv.home, port=port, pool_size=1)
    with _api(srv2) as c:
        def listed():
            return {s["sandboxID"]: s for s in c.get("/v2/sandboxes").json()}

        # the expired one is killed while the server starts, never shown as running again
        now = listed()
        assert expiring_id not in now, now
        assert set(now) == {keep, paused}, now
        assert now[keep]["state"] == "running" and now[paused]["state"] == "paused"
        for sid in (keep, paused):  # what the control plane knew survives adoption
            after = c.get(f"/sandboxes/{sid}").json()
            for field in ("metadata", "endAt", "startedAt", "templateID", "envdAccessToken"):
                assert after[field] == before[sid][field], (field, after, before[sid])
        for sid in (lost, expiring_id):
            assert c.get(f"/sandboxes/{sid}").status_code == 404
        with sqlite3.connect(srv.home / "state.db") as db:
            reasons = dict(db.execute("SELECT id, end_reason FROM sandboxes WHERE state='killed'").fetchall())
        assert reasons.get(lost) == "lost on restart" and reasons.get(expiring_id) == "timeout", reasons
        # warm sandboxes of the dead server were never handed out: they are gone, not adopted
        for sid in pooled:
            assert not (srv.home / "sandboxes" / sid).exists()
            assert _start_ticks(states[sid]["pid"]) != states[sid]["started_ticks"], f"pooled {sid} lives on"
        assert _run(srv2, keep, "cat /home/user/state.txt").strip() == "persisted"
        r = c.post(f"/sandboxes/{paused}/resume", json={"timeout": 60})
        assert r.status_code == 201, r.text
        assert _run(srv2, paused, "cat /home/user/state.txt").strip() == "frozen"
        fresh = _create(c)["sandboxID"]
        assert _run(srv2, fresh, "echo ok").strip() == "ok"
        fp.note_slots()
        for sid in (keep, paused, fresh):
            assert c.delete(f"/sandboxes/{sid}").status_code == 204
    srv2.stop()
    left = fp.resources()
    assert not any(left.values()), left


def test_create_and_kill_200_sandboxes_leaves_nothing(private_server, tmp_path):
    fp = Footprint(tmp_path / "home")
    srv = private_server()
    with _api(srv) as c:
        for _ in range(200):
            sid = _create(c, timeout=60)["sandboxID"]
            fp.slots.add(_state(srv.home, sid)["slot"])
            assert c.delete(f"/sandboxes/{sid}").status_code == 204
        assert c.get("/v2/sandboxes").json() == []
    assert fp.slots
    left = fp.resources(server_pid=srv.proc.pid)
    assert len(left.pop("stems")) <= 5 * 2 + 2, left  # a running server keeps <= 2 stems (5 v1 controllers)
    assert not any(left.values()), left
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left  # stems included: none outlive the server
    assert not mount_root(srv.home).exists()
    assert not fp.group_dirs()


def _use(server, sandbox_id: str, kind: str) -> None:
    """Leave something in the sandbox for its end to clean up."""
    from sandlot import Sandbox

    sbx = Sandbox.connect(sandbox_id, api_url=server.url, api_key=server.api_key)
    try:
        if kind == "command":
            assert sbx.commands.run("echo hi; ls / > /dev/null").stdout == "hi\n"
        elif kind == "background":
            sbx.commands.run("sleep 600", background=True)
            # a daemon out of the agent's reach, and one that ignores SIGTERM and SIGHUP
            sbx.commands.run("setsid sh -c 'sleep 600 &' < /dev/null > /dev/null 2>&1")
            sbx.commands.run("nohup sh -c 'trap \"\" TERM HUP; sleep 600' > /dev/null 2>&1 &")
            sbx.pty.create()
        elif kind == "files":
            sbx.files.write("/home/user/blob.bin", os.urandom(1 << 20))
            sbx.files.write("/tmp/t/a.txt", "in the private /tmp")
            sbx.commands.run("mkdir -p /home/user/d/e && dd if=/dev/zero of=/home/user/d/e/z bs=1M count=4 2>/dev/null")
        elif kind == "paused":
            sbx.commands.run("sleep 600", background=True)
            sbx.pause()
    finally:
        sbx.close()


def _without_sandboxes(found: dict[str, list[str]], home: Path, ids: set[str]) -> dict[str, list[str]]:
    """`found` less what the live sandboxes `ids` hold: their paths, cgroups, processes (by
    cgroup), network namespaces (by holder) and uid slots."""
    slots = {f"uid slot {_state(home, sid)['slot']}" for sid in ids}
    theirs = {pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
              if any(sid in path for sid in ids for path in _cgroups(pid))}

    def mine(kind: str, entry: str) -> bool:
        if kind == "processes":
            return int(entry.split()[0]) not in theirs
        if kind == "netns":
            return int(entry.rsplit(" ", 1)[1]) not in theirs
        if kind == "uid claims":
            return entry not in slots
        return not any(sid in entry for sid in ids)

    return {kind: [e for e in entries if mine(kind, e)] for kind, entries in found.items()}


def test_used_pooled_and_expired_sandboxes_leave_nothing(private_server, tmp_path):
    """Beyond empty sandboxes killed by DELETE: warm-pool ones, ones that ran commands, kept
    background processes (a daemon, one that ignores SIGTERM, a terminal), wrote files or were
    paused; ended by DELETE or by the reaper at their deadline."""
    fp = Footprint(tmp_path / "home")
    srv = private_server(pool_size=2, extra_env={"SANDLOT_POOL_TEMPLATES": "base"})
    deleted, expired, from_pool = [], [], 0
    with _api(srv) as c:
        for _ in range(5):
            for kind in ("plain", "pooled", "command", "background", "files", "paused"):
                for ending in ("delete", "expire"):
                    if kind == "paused" and ending == "expire":
                        continue  # a paused sandbox keeps past its deadline, by design
                    if kind == "pooled":
                        warm = _wait(lambda: _pooled_ids(srv, c), 30, "the warm pool to refill")
                        sid = _create(c, timeout=300)["sandboxID"]
                        from_pool += sid in warm
                    else:  # env vars: never from the pool
                        sid = _create(c, timeout=300, envVars={"K": kind})["sandboxID"]
                    fp.slots.add(_state(srv.home, sid)["slot"])
                    if kind != "plain":
                        _use(srv, sid, kind)
                    if ending == "delete":
                        assert c.delete(f"/sandboxes/{sid}").status_code == 204
                        deleted.append(sid)
                    else:
                        assert c.post(f"/sandboxes/{sid}/timeout", json={"timeout": 1}).status_code == 204
                        expired.append(sid)
        assert from_pool >= 8, from_pool  # (of 10) the pooled creates found a warm sandbox
        _wait(lambda: c.get("/v2/sandboxes").json() == [], 15, "the reaper to end the expired sandboxes")
        fp.note_slots()
    with sqlite3.connect(srv.home / "state.db") as db:
        reasons = dict(db.execute("SELECT id, end_reason FROM sandboxes WHERE state='killed'").fetchall())
    assert {reasons.get(sid) for sid in expired} == {"timeout"}, reasons
    assert all(reasons.get(sid) not in (None, "timeout") for sid in deleted), reasons
    # while the server runs, only its warm pool (refilled: two, fully started) may hold anything
    with _api(srv) as c:
        def settled():
            dirs = {p.name for p in (srv.home / "sandboxes").glob("*")}
            return dirs if len(dirs) == 2 and dirs == _pooled_ids(srv, c) else None

        pooled = _wait(settled, 30, "the warm pool to settle")
    assert not pooled & set(deleted + expired), pooled
    left = _without_sandboxes(fp.resources(server_pid=srv.proc.pid), srv.home, pooled)
    assert len(left.pop("stems")) <= 5 * 2 + 2, left
    assert not any(left.values()), left
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left
    assert not mount_root(srv.home).exists()
    assert not fp.group_dirs()
