"""The security policy and workspaces meet snapshots, fork and pause modes (issue 14): a fork's
children and a cold resume keep the policy; blocked paths hide what a snapshot's layers hold; a
sandbox with a workspace refuses what would drop its workspace (fork, a filesystem pause)."""

from __future__ import annotations

import pytest
from perm_helpers import W

from sandlot import NotFound, PermissionDenied, Sandbox, SandlotError, SecurityPolicy, Unsupported

NO_SHELL = SecurityPolicy(allow_shell=False, blocked_paths=("/etc/motd",))


@pytest.fixture
def made(conn):
    sandboxes: list[Sandbox] = []
    yield sandboxes
    for sandbox in sandboxes:
        try:
            sandbox.kill()
        except SandlotError:
            pass


def _refused_like_the_parent(sandbox: Sandbox) -> None:
    with pytest.raises(PermissionDenied, match="bash"):
        sandbox.commands.run("echo hi")
    with pytest.raises(NotFound):
        sandbox.files.read("/etc/motd")


def test_a_forks_children_keep_the_policy(conn, made):
    parent = Sandbox.create(security=NO_SHELL, **conn)
    made.append(parent)
    _refused_like_the_parent(parent)
    children = parent.fork(count=1, timeout=120)
    assert all(isinstance(c, Sandbox) for c in children), children
    made.extend(children)
    _refused_like_the_parent(children[0])


def test_a_cold_resume_keeps_the_policy(conn, made):
    sandbox = Sandbox.create(security=NO_SHELL, **conn)
    made.append(sandbox)
    assert sandbox.pause(mode="filesystem")
    sandbox.resume()  # a cold boot from its files
    _refused_like_the_parent(sandbox)


def test_blocked_paths_hide_a_snapshots_files(conn, made):
    source = Sandbox.create(**conn)
    made.append(source)
    source.files.write("/home/user/secret.txt", "from the snapshot\n")
    snap = source.create_snapshot()
    try:
        blocked = Sandbox.create(snap.snapshot_id, security={"blocked_paths": ["/home/user/secret.txt"]}, **conn)
        made.append(blocked)
        assert blocked.commands.run("cat /home/user/secret.txt", check=False).exit_code != 0
        assert blocked.commands.run("sudo cat /home/user/secret.txt", check=False).exit_code != 0  # root too
        plain = Sandbox.create(snap.snapshot_id, **conn)
        made.append(plain)
        assert plain.files.read("/home/user/secret.txt") == "from the snapshot\n"
    finally:
        for sandbox in made[1:]:
            sandbox.kill()
        del made[1:]
        Sandbox.delete_snapshot(snap.snapshot_id, **conn)


def test_a_workspace_refuses_fork_and_a_filesystem_pause(open_sandbox):
    sandbox = open_sandbox(preset="development")
    sandbox.commands.run(f"echo mine > {W}/output/state.txt")
    with pytest.raises(Unsupported, match="workspace"):
        sandbox.fork(count=1)
    with pytest.raises(Unsupported, match="workspace"):
        sandbox.pause(mode="filesystem")
    assert sandbox.pause(mode="full")  # its memory, workspace and all
    sandbox.resume()
    assert sandbox.commands.run(f"cat {W}/output/state.txt").stdout == "mine\n"


def test_a_volume_cannot_share_the_workspaces_path(conn, codebase):
    from sandlot import InvalidArgument, Volume

    volume = Volume.create("ws-overlap", **conn)
    try:
        for path in ("/workspace", "/workspace/data", "/"):
            with pytest.raises(InvalidArgument):
                Sandbox.create(codebase=codebase, volume_mounts={path: volume}, **conn)
    finally:
        Volume.destroy("ws-overlap", **conn)
