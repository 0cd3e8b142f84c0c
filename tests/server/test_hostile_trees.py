"""File trees a hostile sandbox leaves in its writable layer: thousands of nested directories, some
it made unsearchable, symlinks out to the host. Killing the sandbox, restarting the server and
reading metrics must all still work, leave nothing behind and never follow a link."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from host_resources import Footprint
from support import start_server

DEPTH = 3000  # Python's recursion limit is 1000: anything walking the tree recursively fails


def _deep_tree_script(canary: Path) -> str:
    """Python run in the sandbox: a DEPTH-deep tree in /home/user (the writable layer) with a link to
    a host path at every level and unsearchable directories (mode 000) along the way, made on the
    way back up (only root inside could enter them on the way down)."""
    return f"""\
import os
os.chdir("/home/user")
for i in range({DEPTH}):
    os.mkdir("d")
    os.symlink("{canary}", "host")
    with open("f", "w") as f:
        f.write("x" * 100)
    os.chdir("d")
for i in range({DEPTH}):
    os.chdir("..")
    if i % 500 == 0:
        os.chmod("d", 0)
print("made")
"""


@pytest.fixture
def private_server(tmp_path):
    servers = []

    def start(port=None):
        srv = start_server(tmp_path / "home", port=port, pool_size=0)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def canary(tmp_path):
    """A host directory a sandbox links to: following the link would delete or count its file."""
    d = Path("/tmp") / f"sandlot-canary-{uuid.uuid4().hex}"
    d.mkdir()
    (d / "keep.txt").write_text("host data")
    yield d
    (d / "keep.txt").unlink(missing_ok=True)
    d.rmdir()


def _api(srv):
    return httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=300)


def _make_deep_tree(srv, sandbox_id: str, canary: Path) -> None:
    from e2b import Sandbox

    os.environ.update(srv.env())
    sbx = Sandbox.connect(sandbox_id)
    sbx.files.write("/tmp/tree.py", _deep_tree_script(canary))
    out = sbx.commands.run("python3 /tmp/tree.py", user="root", timeout=300).stdout
    assert out.strip() == "made", out


def _create(client) -> str:
    r = client.post("/v2/sandboxes", json={"templateID": "base", "timeout": 600})
    assert r.status_code == 201, r.text
    return r.json()["sandboxID"]


def test_metrics_and_kill_with_a_deep_tree(private_server, tmp_path, canary):
    fp = Footprint(tmp_path / "home")
    srv = private_server()
    with _api(srv) as c:
        sid = _create(c)
        _make_deep_tree(srv, sid, canary)
        fp.note_slots()
        r = c.get(f"/sandboxes/{sid}/metrics")
        assert r.status_code == 200, r.text
        # every level holds a directory and a 100-byte file, a block or more each
        assert r.json()[-1]["diskUsed"] >= DEPTH * 2 * 512, r.json()
        assert c.get("/v2/sandboxes").status_code == 200  # the server still answers
        r = c.delete(f"/sandboxes/{sid}")
        assert r.status_code == 204, r.text
        assert c.get(f"/sandboxes/{sid}").status_code == 404
        assert c.get("/v2/sandboxes").json() == []
    left = fp.resources(server_pid=srv.proc.pid)
    left.pop("stems")
    assert not any(left.values()), left
    assert (canary / "keep.txt").read_text() == "host data"
    srv.stop()
    assert "RecursionError" not in srv.log.read_text()
    left = fp.resources()
    assert not any(left.values()), left


def test_restart_cleans_up_a_lost_sandbox_with_a_deep_tree(private_server, tmp_path, canary):
    fp = Footprint(tmp_path / "home")
    srv = private_server()
    port = int(srv.url.rsplit(":", 1)[1])
    with _api(srv) as c:
        sid = _create(c)
        _make_deep_tree(srv, sid, canary)
        fp.note_slots()
    srv.stop(signal.SIGKILL)
    state = json.loads((srv.home / "sandboxes" / sid / "state.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)  # the sandbox dies while the server is down
    time.sleep(0.2)
    srv2 = private_server(port=port)  # must start: the lost sandbox's layer is removed on the way
    with _api(srv2) as c:
        assert c.get(f"/sandboxes/{sid}").status_code == 404
        assert c.get("/v2/sandboxes").json() == []
    srv2.stop()
    assert (canary / "keep.txt").read_text() == "host data"
    left = fp.resources()
    assert not any(left.values()), left


def test_rootless_kill_removes_a_deep_tree_with_unsearchable_directories(canary):
    """The rootless server is not root: it must make the sandbox's directories (its own uid's)
    searchable again before it can remove them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rootless"))
    from rootless_support import Account, remove_home, start_rootless_server

    account = Account()
    if error := account.userns_error():
        pytest.skip(f"user namespaces are unavailable to unprivileged users here: {error}")
    home = account.make_home()
    srv = start_rootless_server(account, home)
    try:
        from e2b import Sandbox

        os.environ.update(srv.env())
        with _api(srv) as c:
            r = c.post("/v2/sandboxes", json={"templateID": "host", "timeout": 600})
            assert r.status_code == 201, r.text
            sid = r.json()["sandboxID"]
            sbx = Sandbox.connect(sid)
            sbx.files.write("/tmp/tree.py", _deep_tree_script(canary))
            assert sbx.commands.run("python3 /tmp/tree.py", timeout=300).stdout.strip() == "made"
            r = c.get(f"/sandboxes/{sid}/metrics")
            assert r.status_code == 200 and r.json()[-1]["diskUsed"] > 0, r.text
            r = c.delete(f"/sandboxes/{sid}")
            assert r.status_code == 204, r.text
            assert list((home / "sandboxes").iterdir()) == []
        assert (canary / "keep.txt").read_text() == "host data"
    finally:
        srv.stop()
        remove_home(home)


def test_metrics_of_a_layer_with_many_files_do_not_stall_the_server(private_server):
    """Reading disk use once walked the writable layer; a sandbox with many files must not make
    every other request wait for that reading (now one statvfs of the sandbox's own disk)."""
    srv = private_server()
    with _api(srv) as c:
        sid = _create(c)
        from e2b import Sandbox

        os.environ.update(srv.env())
        sbx = Sandbox.connect(sid)
        sbx.commands.run("python3 -c \"import os\nfor i in range(40):\n os.mkdir(f'/home/user/m{i}')\n"
                         " for j in range(1000): open(f'/home/user/m{i}/{j}', 'w').close()\"", timeout=300)
        # when each directory was last read (stat does not read it): a walk reads them all, and
        # relatime then moves their atime (it is not after their mtime, the last file made in them)
        atimes = "python3 -c \"import os; print([os.stat(f'/home/user/m{i}').st_atime_ns for i in range(40)])\""
        before = sbx.commands.run(atimes).stdout
        done = threading.Event()
        took = []

        def read_metrics():
            start = time.monotonic()
            with _api(srv) as other:
                assert other.get(f"/sandboxes/{sid}/metrics").status_code == 200
            took.append(time.monotonic() - start)
            done.set()

        reader = threading.Thread(target=read_metrics)
        reader.start()
        slowest = 0.0
        while not done.is_set():
            start = time.monotonic()
            assert c.get("/v2/sandboxes").status_code == 200
            slowest = max(slowest, time.monotonic() - start)
        reader.join()
        assert took, took
        assert sbx.commands.run(atimes).stdout == before  # not walked (a walk took ~0.3 s here)
        assert slowest < 0.5, (slowest, took)
        assert c.delete(f"/sandboxes/{sid}").status_code == 204
