"""The server can die at any moment: nothing is leaked and nothing is forgotten."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sandlot.runtimes.namespace import mount_root
from support import start_server


def _api(server):
    return httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120)


def _create(client, **extra):
    r = client.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _resources(home: Path) -> dict[str, list[str]]:
    """Everything sandboxes of this server could leave behind on the host."""
    home = str(home)
    procs = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "bwrap" in cmd and home in cmd:
                procs.append(pid)
    mnt = str(mount_root(Path(home)))
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if home in line or mnt in line]
    dirs = [str(p) for p in Path(home, "sandboxes").glob("*")]
    dirs += [str(p) for p in Path(mnt).glob("*") if not p.name.startswith("agent-")]
    # the server's own groups hold only its stems (spare-*: processes forked ahead for creates)
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/sandlot-{Path(mnt).name}/*")
               if p.is_dir() and not p.name.startswith("spare-")]
    stems = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/sandlot-{Path(mnt).name}/spare-*")]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return {"processes": procs, "mounts": mounts, "dirs": dirs, "cgroups": cgroups, "netns": netns,
            "stems": stems}


def _run(server, sandbox, cmd):
    from e2b import Sandbox

    os.environ.update(server.env())
    return Sandbox.connect(sandbox["sandboxID"]).commands.run(cmd).stdout


@pytest.fixture
def private_server(tmp_path):
    servers = []

    def start(home=tmp_path / "home", port=None):
        srv = start_server(home, port=port, pool_size=0)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def test_kill_9_then_restart_adopts_or_cleans_up(private_server, tmp_path):
    srv = private_server()
    with _api(srv) as c:
        keep = _create(c, metadata={"role": "keep"})
        lost = _create(c, metadata={"role": "lost"})
        _run(srv, keep, "echo persisted > /home/user/state.txt")
    srv.stop(signal.SIGKILL)
    # while the server is down, one sandbox dies on its own
    state = (srv.home / "sandboxes" / lost["sandboxID"] / "state.json").read_text()
    import json

    os.kill(json.loads(state)["pid"], signal.SIGKILL)
    time.sleep(0.2)

    srv2 = private_server(home=srv.home, port=int(srv.url.rsplit(":", 1)[1]))
    with _api(srv2) as c:
        listed = {s["sandboxID"]: s for s in c.get("/v2/sandboxes").json()}
        assert keep["sandboxID"] in listed
        assert lost["sandboxID"] not in listed
        assert c.get(f"/sandboxes/{lost['sandboxID']}").status_code == 404
        assert _run(srv2, keep, "cat /home/user/state.txt").strip() == "persisted"
        assert c.delete(f"/sandboxes/{keep['sandboxID']}").status_code == 204
    srv2.stop()
    left = _resources(srv.home)
    assert not any(left.values()), left


def test_create_and_kill_200_sandboxes_leaves_nothing(private_server):
    srv = private_server()
    before_netns = _resources(srv.home)["netns"]
    with _api(srv) as c:
        for _ in range(200):
            sid = _create(c, timeout=60)["sandboxID"]
            assert c.delete(f"/sandboxes/{sid}").status_code == 204
        assert c.get("/v2/sandboxes").json() == []
    left = _resources(srv.home)
    assert left["netns"] == before_netns
    left.pop("netns")
    assert len(left.pop("stems")) <= 5 * 2, left  # a running server keeps <= 2 stems (5 v1 controllers)
    assert not any(left.values()), left
    srv.stop()
    left = _resources(srv.home)
    left.pop("netns")
    assert not any(left.values()), left  # stems included: none outlive the server
    assert not mount_root(srv.home).exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/sandlot-{mount_root(srv.home).name}"))
