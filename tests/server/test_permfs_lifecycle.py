"""The permission filesystem's life with its server's: it starts with the first workspace, outlives a
server killed with -9 (the next server adopts it with the sandboxes), and goes with a clean stop,
leaving no process or mount. A daemon that died with the server takes its sandboxes' workspaces
with it: those sandboxes are not adopted. A daemon killed under a running server leaves a dead
mount, which the server removes (when a workspace goes, before a new daemon starts, at stop) and
the suites' leak checks report rather than crash on."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from host_resources import Footprint, permfs_daemons, sandbox_traces
from support import denials, start_server, wait_until

from sandlot import Sandbox
from sandlot.runtimes.namespace import mount_root

if os.geteuid() != 0:
    pytest.skip("workspaces need a server run as root", allow_module_level=True)


PROJECT = {"main.py": "print('main')\n", ".env": "API_KEY=secret\n", "output/.keep": ""}


def write_project(root, files=PROJECT):
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return root


def _daemon(home) -> tuple[int | None, str]:
    """(pid, mount point) of the server's permission filesystem daemon, pid None if none runs."""
    mnt = mount_root(home)
    pids = permfs_daemons(mnt)
    assert len(pids) <= 1, pids
    return (pids[0] if pids else None), str(mnt / ".permfs")


def _mounted(point: str) -> bool:
    return any(line.split()[1] == point for line in open("/proc/mounts"))


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_daemon_survives_kill_9_and_stops_with_the_server(home, tmp_path):
    fp = Footprint(home)
    srv = start_server(home, pool_size=0)
    port = int(srv.url.rsplit(":", 1)[1])
    conn = {"api_url": srv.url, "api_key": srv.api_key}
    try:
        assert _daemon(home)[0] is None  # not before a workspace needs it
        sandbox = Sandbox.from_local(write_project(tmp_path / "p"), preset="agent-safe", **conn)
        sandbox.commands.run("echo kept > /workspace/output/state.txt")
        pid, mount = _daemon(home)
        assert pid is not None and _mounted(mount)
        fp.note_slots()
        srv.stop(signal.SIGKILL)
        assert _daemon(home)[0] == pid  # lives on with the sandboxes
        srv = start_server(home, port=port, pool_size=0)
        again = Sandbox.connect(sandbox.sandbox_id, **conn)
        assert again.commands.run("cat /workspace/output/state.txt").stdout == "kept\n"
        assert again.commands.run("cat /workspace/.env", check=False).exit_code != 0
        # the adopted daemon reports denials to the new server
        rows = wait_until(lambda: denials(srv, sandbox.sandbox_id), message="a denial in the new server's trail")
        assert rows[0]["detail"]["path"] == "/.env"
        again.set_permissions(preset="full-access")  # the adopted daemon takes changes
        assert again.commands.run("cat /workspace/.env").stdout == PROJECT[".env"]
        assert _daemon(home)[0] == pid
        again.kill()
    finally:
        srv.stop()
    assert _daemon(home)[0] is None and not _mounted(mount)
    left = fp.resources()
    assert not any(left.values()), left


def test_a_workspace_whose_daemon_died_is_not_adopted(home, tmp_path):
    srv = start_server(home, pool_size=0)
    port = int(srv.url.rsplit(":", 1)[1])
    conn = {"api_url": srv.url, "api_key": srv.api_key}
    try:
        with_ws = Sandbox.from_local(write_project(tmp_path / "p"), preset="read-only", **conn)
        plain = Sandbox.create(**conn)
        srv.stop(signal.SIGKILL)
        pid, mount = _daemon(home)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        srv = start_server(home, port=port, pool_size=0)
        with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}) as http:
            assert http.get(f"/sandboxes/{with_ws.sandbox_id}").status_code == 404  # its /workspace was gone
            assert http.get(f"/sandboxes/{plain.sandbox_id}").status_code == 200
        assert not _mounted(mount)  # the dead daemon's mount was cleared
        Sandbox.connect(plain.sandbox_id, **conn).kill()
        # a new workspace starts a new daemon
        with Sandbox.from_local(write_project(tmp_path / "q"), preset="read-only", **conn) as fresh:
            assert fresh.commands.run("cat /workspace/main.py").stdout == PROJECT["main.py"]
    finally:
        srv.stop()


def _killed(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), message=f"daemon {pid} gone")  # the server reaps it


def test_a_daemon_killed_under_a_running_server(home, tmp_path):
    fp = Footprint(home)
    srv = start_server(home, pool_size=0)
    conn = {"api_url": srv.url, "api_key": srv.api_key}
    try:
        first = Sandbox.from_local(write_project(tmp_path / "p"), preset="read-only", **conn)
        fp.note_slots()
        pid, mount = _daemon(home)
        _killed(pid)
        assert _mounted(mount)  # dead: "transport endpoint is not connected"
        # the leak checks report the dead mount instead of failing on it
        assert mount in sandbox_traces(first.sandbox_id, home).get("dead mounts", [])
        assert any(mount in item and "dead mount" in item for item in fp.resources()["permfs"])
        assert first.commands.run("ls /workspace", check=False).exit_code != 0  # its workspace went with it
        first.kill()
        assert not _mounted(mount)  # its last workspace gone: the server removed the dead mount
        # the server recovers: a new workspace gets a new daemon
        with Sandbox.from_local(write_project(tmp_path / "q"), preset="read-only", **conn) as fresh:
            assert fresh.commands.run("cat /workspace/main.py").stdout == PROJECT["main.py"]
            assert _daemon(home)[0] not in (None, pid)
        # killed again, with a workspace sandbox running: the stop removes everything
        last = Sandbox.from_local(write_project(tmp_path / "r"), preset="read-only", **conn)
        _killed(_daemon(home)[0])
        assert last.commands.run("ls /workspace", check=False).exit_code != 0
    finally:
        srv.stop()
    assert _daemon(home)[0] is None and not _mounted(mount)
    assert not [line for line in open("/proc/mounts") if line.split()[1].startswith(str(mount_root(home)))]
    left = fp.resources()
    assert not any(left.values()), left
