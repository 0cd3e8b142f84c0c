"""Paused sandboxes survive the server: a clean stop, kill -9, and a host reboot (simulated: the
server killed, then every process, mount, cgroup and /run entry of its sandboxes removed, as a
reboot would; the state directory on disk stays). Filesystem pauses resume after any of them; a
full pause survives a restart frozen and, after a reboot, degrades to a filesystem pause, reported
as such. Nothing is left once they are killed (layers included)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from host_resources import CGROUP_ROOT, Footprint
from sandlot.runtimes.namespace import mount_root
from sandlot.runtimes.uids import UidRanges
from support import start_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace runtime needs root")


@pytest.fixture
def private_server(tmp_path):
    servers = []

    def start():
        srv = start_server(tmp_path / "home", pool_size=0)
        servers.append(srv)
        os.environ.update(srv.env())
        return srv

    yield start
    for srv in servers:
        srv.stop()
    # whatever a failed test left (sandboxes of a killed server): adopted, then killed
    srv = start_server(tmp_path / "home", pool_size=0)
    try:
        with _api(srv) as c:
            for s in c.get("/v2/sandboxes", params={"state": "running,paused"}).json():
                c.delete(f"/sandboxes/{s['sandboxID']}")
    finally:
        srv.stop()


def _api(srv) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120)


def _sandboxes(srv):
    """A running sandbox, one paused with its memory (a process running), one with its files."""
    from e2b import Sandbox

    made = {}
    for role in ("running", "full", "filesystem"):
        sbx = Sandbox.create(timeout=600, metadata={"role": role})
        sbx.files.write("/home/user/role.txt", role)
        made[role] = sbx
    made["full"].commands.run("sleep 900", background=True)
    assert made["full"].pause() is True
    assert made["filesystem"].pause(mode="filesystem") is True
    return {role: sbx.sandbox_id for role, sbx in made.items()}


def _state(srv, sandbox_id: str) -> tuple[str, str | None]:
    with _api(srv) as c:
        r = c.get(f"/sandboxes/{sandbox_id}")
    if r.status_code == 404:
        return "gone", None
    body = r.json()
    return body["state"], body.get("pauseMode")


def _resume_and_read(sandbox_id: str) -> tuple[str, list[str]]:
    from e2b import Sandbox

    sbx = Sandbox.connect(sandbox_id, timeout=120)
    procs = [" ".join([p.cmd, *p.args]) for p in sbx.commands.list()]
    return sbx.files.read("/home/user/role.txt"), procs


def _kill_all(srv, ids) -> None:
    with _api(srv) as c:
        for sid in ids:
            c.delete(f"/sandboxes/{sid}")


def _simulate_reboot(home: Path) -> None:
    """What a reboot takes from a server whose process is already dead: its sandboxes' processes
    (frozen ones too), mounts, cgroups and everything under /run; its state dir stays."""
    mnt = mount_root(home)
    group = "sandlot-" + mnt.name
    groups = [g for g in [*CGROUP_ROOT.glob(f"*/{group}/*"), *CGROUP_ROOT.glob(f"{group}/*")] if g.is_dir()]
    for g in groups:
        for pid in (g / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if (g / "freezer.state").exists():
            (g / "freezer.state").write_text("THAWED")  # frozen tasks die once thawed
    for g in groups:
        deadline = time.monotonic() + 10
        while (g / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        g.rmdir()
    for g in [*CGROUP_ROOT.glob(f"*/{group}"), CGROUP_ROOT / group]:
        if g.is_dir():
            g.rmdir()
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(home.resolve()) in line or str(mnt) in line]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=True)
    for slot in UidRanges(mnt).mine():
        (mnt.parent / "uids" / str(slot)).unlink()
    subprocess.run(["rm", "-rf", "--one-file-system", str(mnt)], check=True)


def test_a_clean_stop_keeps_paused_sandboxes_with_their_files(private_server, tmp_path):
    fp = Footprint(tmp_path / "home")
    srv = private_server()
    ids = _sandboxes(srv)
    srv.stop()  # SIGTERM: running sandboxes end, paused ones keep their files
    srv = private_server()
    assert _state(srv, ids["running"])[0] == "gone"
    assert _state(srv, ids["full"]) == ("paused", "filesystem")  # nothing may run past a stop
    assert _state(srv, ids["filesystem"]) == ("paused", "filesystem")
    for role in ("full", "filesystem"):
        text, procs = _resume_and_read(ids[role])
        assert text == role and not [p for p in procs if "sleep" in p]
    _kill_all(srv, ids.values())
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left


def test_kill_9_keeps_both_pause_modes(private_server, tmp_path):
    fp = Footprint(tmp_path / "home")
    srv = private_server()
    ids = _sandboxes(srv)
    srv.stop(signal.SIGKILL)
    srv = private_server()
    assert _state(srv, ids["running"]) == ("running", None)  # adopted
    assert _state(srv, ids["full"]) == ("paused", "full")  # still frozen in memory
    assert _state(srv, ids["filesystem"]) == ("paused", "filesystem")
    text, procs = _resume_and_read(ids["full"])
    assert text == "full" and [p for p in procs if "sleep 900" in p]  # its process thawed
    assert _resume_and_read(ids["filesystem"])[0] == "filesystem"
    _kill_all(srv, ids.values())
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left


def test_after_a_reboot_full_pauses_degrade_to_filesystem(private_server, tmp_path):
    fp = Footprint(tmp_path / "home")
    srv = private_server()
    ids = _sandboxes(srv)
    fp.note_slots()
    srv.stop(signal.SIGKILL)
    _simulate_reboot(srv.home)
    srv = private_server()
    assert _state(srv, ids["running"])[0] == "gone"  # its processes died with the host
    assert _state(srv, ids["full"]) == ("paused", "filesystem")  # degraded, and says so
    assert _state(srv, ids["filesystem"]) == ("paused", "filesystem")
    assert "memory, which did not survive" in srv.log.read_text()
    for role in ("full", "filesystem"):
        text, procs = _resume_and_read(ids[role])
        assert text == role and not [p for p in procs if "sleep" in p]
    _kill_all(srv, ids.values())
    srv.stop()
    left = fp.resources()
    assert not any(left.values()), left
