"""Codebases: stored once, uploaded as a file or a tar stream, listed, downloaded, deleted; many
sandboxes on one at once, each with its own permissions and changes; commit and discard; the REST
routes' answers to bad input. Both SDK surfaces."""

from __future__ import annotations

import io
import os
import tarfile

import httpx
import pytest

from sandlot import (AlreadyExists, AsyncCodebase, AsyncSandbox, Codebase, FileNotFound, InvalidArgument, NotFound,
                     Sandbox)

if os.geteuid() != 0:
    pytest.skip("workspaces need a server run as root", allow_module_level=True)

W = "/workspace"


@pytest.fixture
def conn(server) -> dict:
    return {"api_url": server.url, "api_key": server.api_key}


@pytest.fixture
def local(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("print('app')\n")
    (tmp_path / "README.md").write_text("readme\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "big.js").write_text("x")
    os.symlink("src/app.py", tmp_path / "link.py")
    return tmp_path


def test_create_upload_list_download_delete(conn, local, tmp_path):
    cb = Codebase.create("demo", **conn)
    assert (cb.name, cb.files, cb.version) == ("demo", 0, 1)
    cb.upload_dir(local, exclude=["node_modules"])
    assert cb.files == 3 and cb.version == 1  # not in use: written in place
    cb.upload_file("/docs/guide.md", "guide")
    paths = {f.path: f.type for f in cb.list_files()}
    assert paths == {"/README.md": "file", "/docs": "dir", "/docs/guide.md": "file", "/link.py": "symlink",
                     "/src": "dir", "/src/app.py": "file"}
    assert cb.read_file("src/app.py") == b"print('app')\n"
    with pytest.raises(FileNotFound):
        cb.read_file("/nope")
    out = cb.download(tmp_path / "back")
    assert (out / "docs" / "guide.md").read_text() == "guide" and os.readlink(out / "link.py") == "src/app.py"
    assert cb.id in {c.id for c in Codebase.list(**conn)}
    assert Codebase.get(cb.id, **conn).files == 4
    assert cb.delete() and not cb.delete()
    with pytest.raises(NotFound):
        Codebase.get(cb.id, **conn)


async def test_async_surface(conn, local):
    cb = await AsyncCodebase.create("async-demo", **conn)
    async with cb:
        await cb.upload_dir(local / "src", into="/lib")
        assert [f.path for f in await cb.list_files("/lib")] == ["/lib/app.py"]
        sandbox = await AsyncSandbox.create(codebase=cb, preset="read-only", **conn)
        async with sandbox:
            assert (await sandbox.commands.run(f"cat {W}/lib/app.py")).stdout == "print('app')\n"


def test_sandboxes_share_a_codebase_each_with_its_own_changes_and_rules(conn, local):
    cb = Codebase.create("shared", **conn)
    cb.upload_dir(local, exclude=["node_modules"])
    one = Sandbox.create(codebase=cb, preset="development", **conn)
    two = Sandbox.create(codebase=cb, preset="read-only", **conn)
    try:
        one.commands.run(f"echo changed > {W}/README.md && echo new > {W}/new.txt && rm {W}/src/app.py")
        assert one.commands.run(f"cat {W}/README.md").stdout == "changed\n"
        assert two.commands.run(f"cat {W}/README.md").stdout == "readme\n"  # its own view
        assert two.commands.run(f"ls {W}").stdout.split() == ["README.md", "link.py", "src"]
        assert two.commands.run(f"echo x > {W}/README.md", check=False).exit_code != 0
        assert cb.read_file("README.md") == b"readme\n"  # nothing reaches the codebase by itself
        with pytest.raises(AlreadyExists):
            cb.delete()  # in use
        # an upload while sandboxes use the tree makes a new version; they keep theirs
        cb.upload_file("/later.txt", "later")
        assert cb.version == 2
        assert two.commands.run(f"test -e {W}/later.txt", check=False).exit_code != 0
        three = Sandbox.create(codebase=cb, preset="read-only", **conn)
        assert three.commands.run(f"cat {W}/later.txt").stdout == "later"
        three.kill()
        # commit: the next version holds one's changes; one goes on from it, with no layer left
        committed = one.commit()
        assert committed.version == 3
        assert cb.read_file("README.md") == b"changed\n" and cb.read_file("new.txt") == b"new\n"
        assert "/src/app.py" not in {f.path for f in cb.list_files()}
        assert cb.read_file("later.txt") == b"later"  # the upload made meanwhile stays
        assert one.commands.run(f"cat {W}/README.md {W}/later.txt").stdout == "changed\nlater"
        # discard: back to what the codebase had when it (re)started
        one.commands.run(f"echo scratch > {W}/README.md && touch {W}/tmpfile")
        one.discard()
        assert one.commands.run(f"cat {W}/README.md").stdout == "changed\n"
        assert one.commands.run(f"test -e {W}/tmpfile", check=False).exit_code != 0
        with pytest.raises(NotFound):
            Sandbox.create(**conn).get_permissions()  # no workspace
    finally:
        one.kill()
        two.kill()
    cb.delete()


def test_from_local_owns_its_codebase(conn, local):
    before = {c.id for c in Codebase.list(**conn)}
    with Sandbox.from_local(local, preset="read-only", exclude=["node_modules"], **conn) as sandbox:
        assert sandbox.commands.run(f"ls {W}").stdout.split() == ["README.md", "link.py", "src"]
        assert len({c.id for c in Codebase.list(**conn)} - before) == 1
    assert {c.id for c in Codebase.list(**conn)} == before
    with pytest.raises(InvalidArgument):
        Sandbox.from_local(local / "README.md", **conn)


def test_workspace_path_and_an_empty_workspace(conn):
    with Sandbox.create(preset="full-access", workspace_path="/home/user/project", **conn) as sandbox:
        sandbox.commands.run("echo hi > /home/user/project/a.txt")
        assert sandbox.files.read("/home/user/project/a.txt") == "hi\n"
        with pytest.raises(InvalidArgument):
            sandbox.commit()  # no codebase behind it
    with pytest.raises(InvalidArgument):
        Sandbox.create(preset="full-access", workspace_path="/proc/x", **conn)


def _tar(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (kind, value) in members.items():
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.CHRTYPE
                info.linkname = value
                tar.addfile(info)
    return buf.getvalue()


def test_a_workspace_s_changes_are_on_the_sandbox_s_disk(conn):
    """The changes a sandbox makes in its workspace land on its own disk: bounded by disk_mb as its
    other files are, and counted in its disk use."""
    with Sandbox.create(preset="full-access", workspace_path="/home/user/project", limits={"disk_mb": 64},
                        **conn) as sandbox:
        full = sandbox.commands.run("head -c 100M /dev/zero > /home/user/project/big", check=False)
        assert full.exit_code != 0 and "No space left" in full.stderr, full.stderr
        assert int(sandbox.commands.run("stat -c %s /home/user/project/big").stdout) < 64 << 20
        sandbox.commands.run("rm /home/user/project/big && echo ok > /home/user/project/small")
        assert sandbox.files.read("/home/user/project/small") == "ok\n"  # usable again


@pytest.mark.parametrize("member", [{"../escape": ("file", b"x")}, {"out": ("symlink", "/etc/passwd")},
                                    {"up": ("symlink", "../../x")}, {"dev": ("device", "")}])
def test_hostile_tars_are_refused(conn, server, member):
    cb = Codebase.create("hostile", **conn)
    try:
        cb.upload_file("keep.txt", "kept")
        with pytest.raises(InvalidArgument):
            cb.upload_tar(_tar({"first.txt": ("file", b"1"), **member}))
        assert [f.path for f in cb.list_files()] == ["/keep.txt"]  # all or nothing
    finally:
        cb.delete()
    assert not (server.home.parent / "escape").exists()


def test_absolute_tar_members_land_inside(conn):
    cb = Codebase.create("absolute", **conn)
    try:
        cb.upload_tar(_tar({"/etc/abs": ("file", b"x")}))
        assert cb.read_file("etc/abs") == b"x"
    finally:
        cb.delete()


def test_rest_answers(server):
    h = {"X-API-KEY": server.api_key}
    with httpx.Client(base_url=server.url, headers=h) as http:
        assert http.get("/codebases", headers={"X-API-KEY": "wrong"}).status_code == 401
        assert http.post("/codebases", json={}).status_code == 400
        assert http.post("/codebases", json={"name": "x" * 200}).status_code == 400
        assert http.get("/codebases/cb0000000000000000").status_code == 404
        assert http.get("/codebases/../etc").status_code == 404
        made = http.post("/codebases", json={"name": "rest"}).json()
        base = f"/codebases/{made['codebaseID']}"
        assert http.put(base + "/files", params={"path": "../x"}, content=b"x").status_code == 400
        assert http.put(base + "/files", params={"path": "/"}, content=b"x").status_code == 400
        assert http.post(base + "/tar", content=b"not a tar").status_code == 400
        assert http.put(base + "/files", params={"path": "a/b.txt"}, content=b"ab").json()["files"] == 1
        assert http.get(base + "/files", params={"path": "a/b.txt"}).content == b"ab"
        assert http.get(base + "/list", params={"path": "/nope"}).status_code == 404
        create = {"templateID": "base", "workspace": {"codebase": made["codebaseID"], "preset": "nope"}}
        assert http.post("/v2/sandboxes", json=create).status_code == 400
        create["workspace"] = {"codebase": made["codebaseID"], "permissions": [{"pattern": "/x", "permission": "all"}]}
        assert http.post("/v2/sandboxes", json=create).status_code == 400
        create["workspace"] = {"codebase": "cbffffffffffffffff"}
        assert http.post("/v2/sandboxes", json=create).status_code == 404
        assert http.delete(base).status_code == 204


def test_a_committed_symlink_never_leads_the_server_off_the_tree(conn, server, tmp_path):
    """A sandbox may commit any symlink (`ln -s /etc out`): uploading into it, downloading or
    listing through it, reading it, must not reach the host's /etc."""
    cb = Codebase.create("links", **conn)
    try:
        with Sandbox.create(codebase=cb, preset="full-access", **conn) as sandbox:
            sandbox.commands.run("ln -s /etc /workspace/out && ln -s /etc/passwd /workspace/pw")
            sandbox.commit()
        assert {f.path: f.type for f in cb.list_files()} == {"/out": "symlink", "/pw": "symlink"}
        with pytest.raises(InvalidArgument):
            cb.upload_tar(_tar({"planted": ("file", b"x")}), into="/out")
        with pytest.raises(InvalidArgument):
            cb.upload_file("/out/planted", "x")
        assert not os.path.exists("/etc/planted")
        with pytest.raises(InvalidArgument):
            cb.download_tar("/out")
        with pytest.raises((InvalidArgument, FileNotFound)):
            cb.list_files("/out")
        with pytest.raises(FileNotFound):
            cb.read_file("/pw")
        names = tarfile.open(fileobj=io.BytesIO(cb.download_tar())).getnames()
        assert sorted(names) == ["out", "pw"]  # the links themselves, not what they point at
    finally:
        cb.delete()


def test_a_commit_never_follows_a_directory_the_sandbox_swaps_for_a_symlink(conn, tmp_path):
    """The sandbox runs on while its changes are committed: a directory of its layer that it keeps
    exchanging (renameat2 RENAME_EXCHANGE) with a symlink to a host directory holding the same names
    must not lead the commit to copy the host's files into the codebase."""
    secret = tmp_path / "secret"
    secret.mkdir()
    names = [f"f{i:03}" for i in range(100)]
    for name in names:
        (secret / name).write_text("host-secret")
    swap = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "while True:\n    libc.renameat2(-100, b'd', -100, b's', 2)\n")  # AT_FDCWD, RENAME_EXCHANGE
    cb = Codebase.create("swaps", **conn)
    try:
        with Sandbox.create(codebase=cb, preset="full-access", **conn) as sandbox:
            sandbox.files.write("/tmp/swap.py", swap)
            for _ in range(4):
                sandbox.commands.run(
                    f"cd {W} && (kill $(cat /tmp/swap.pid) 2>/dev/null; rm -rf d s; mkdir d && ln -s {secret} s && "
                    f"for n in {' '.join(names)}; do head -c 300000 /dev/zero | tr '\\0' x > d/$n; done; "
                    "python3 /tmp/swap.py >/dev/null 2>&1 & echo $! > /tmp/swap.pid)")
                sandbox.commit()
                assert b"host-secret" not in cb.download_tar()
            sandbox.commands.run("kill $(cat /tmp/swap.pid)")
    finally:
        cb.delete()


def test_a_commit_replays_deletions_and_replaced_directories(conn, local):
    """Whiteouts delete, an opaque directory (removed and made again) replaces what was there."""
    cb = Codebase.create("replays", **conn)
    cb.upload_dir(local, exclude=["node_modules"])
    try:
        with Sandbox.create(codebase=cb, preset="full-access", **conn) as sandbox:
            sandbox.commands.run(f"cd {W} && rm README.md && rm -rf src && mkdir src && echo n > src/new.py && "
                                 "mkfifo pipe && ln -sf /etc link.py")
            sandbox.commit()
        assert {f.path: f.type for f in cb.list_files()} == {"/link.py": "symlink", "/src": "dir",
                                                            "/src/new.py": "file"}
        assert cb.read_file("src/new.py") == b"n\n"
    finally:
        cb.delete()
