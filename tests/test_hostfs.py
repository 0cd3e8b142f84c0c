"""Host filesystem helpers: mountinfo read right (paths with spaces), trees removed never through a
mount, a template in use never deleted; and a namespace runtime whose state dir has a space in it."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import runtime_home

from sandlot.hostfs import Mount, mounted_under, parse_mountinfo, remove_tree, source_in_use
from sandlot.syscalls import is_mount_root

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def test_mountinfo_paths_are_unescaped():
    text = ("36 35 98:0 /my\\040rootfs /mnt/with\\040space\\011tab rw,noatime master:1 - ext4 /dev/x rw\n"
            "37 35 0:5 / /back\\134slash\\012nl rw - proc proc rw\n")
    assert parse_mountinfo(text) == [Mount("/my rootfs", "/mnt/with space\ttab"), Mount("/", "/back\\slash\nnl")]


@pytest.fixture
def tree(tmp_path):
    rootfs = tmp_path / ".old-base-1234abcd" / "rootfs"
    (rootfs / "proc").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    lower = tmp_path / "lower"
    lower.mkdir()
    yield rootfs, lower
    subprocess.run(["umount", "--lazy", str(lower)], capture_output=True, check=False)


@needs_root
def test_a_mounted_rootfs_is_in_use(tree):
    rootfs, lower = tree
    assert not source_in_use(rootfs.parent)
    subprocess.run(["mount", "--bind", "-o", "ro", str(rootfs), str(lower)], check=True)
    assert source_in_use(rootfs.parent)
    subprocess.run(["umount", str(lower)], check=True)
    assert not source_in_use(rootfs.parent)


@needs_root
def test_remove_tree_detaches_mounts_first_when_asked(tree, tmp_path):
    rootfs, _ = tree
    subprocess.run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host data")
    (rootfs / "host").mkdir()
    subprocess.run(["mount", "--bind", str(outside), str(rootfs / "host")], check=True)
    remove_tree(rootfs.parent, detach_mounts=True)
    assert not rootfs.parent.exists()
    assert (outside / "keep").read_text() == "host data"


@needs_root
def test_remove_tree_never_goes_through_a_mount_in_a_path_with_spaces(tmp_path):
    top = tmp_path / "a state dir" / "sand box"
    (top / "in side").mkdir(parents=True)
    outside = tmp_path / "host data"
    outside.mkdir()
    (outside / "keep").write_text("host data")
    # a bind of a directory on the same filesystem: rm --one-file-system alone would go through it
    subprocess.run(["mount", "--bind", str(outside), str(top / "in side")], check=True)
    try:
        assert mounted_under(tmp_path / "a state dir") == [str(top / "in side")]
        with pytest.raises(OSError, match="still mounted"):
            remove_tree(top)
        assert (outside / "keep").read_text() == "host data"
    finally:
        subprocess.run(["umount", str(top / "in side")], check=True)
    remove_tree(top)
    assert not top.exists() and (outside / "keep").exists()


@needs_root
def test_is_mount_root_sees_a_bind_of_the_same_filesystem(tmp_path):
    """What tells the runtime whether a workspace's overlay is still mounted: a bind of a directory
    of the same filesystem too, which os.path.ismount misses."""
    (tmp_path / "point").mkdir()
    (tmp_path / "source").mkdir()
    assert not is_mount_root(str(tmp_path / "point")) and not is_mount_root(str(tmp_path / "not there"))
    subprocess.run(["mount", "--bind", str(tmp_path / "source"), str(tmp_path / "point")], check=True)
    try:
        assert is_mount_root(str(tmp_path / "point"))
        assert not os.path.ismount(tmp_path / "point")
    finally:
        subprocess.run(["umount", str(tmp_path / "point")], check=True)
    assert not is_mount_root(str(tmp_path / "point"))


@needs_root
def test_namespace_runtime_in_a_state_dir_with_a_space_keeps_its_guards(tmp_path):
    """A real sandbox of a runtime whose state dir has a space: its mounts are seen, and a kill that
    finds a mount it did not make in the sandbox's directory never goes through it: what is mounted
    there stays untouched (the kill removes the directory where nothing is mounted: runtimes/mount_ns.py,
    and the kernel detaches the mount with its mount point)."""
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    home, template = runtime_home(tmp_path)
    runtime = NamespaceRuntime(home)
    outside = tmp_path / "host files"
    outside.mkdir()
    (outside / "keep").write_text("host data")
    sandbox_dir = home / "sandboxes" / "ispacetest0000000000"
    try:
        runtime.create(SandboxSpec("ispacetest0000000000", "base"), template)
        assert str(sandbox_dir / "lower") in mounted_under(sandbox_dir)
        (sandbox_dir / "extra").mkdir()
        subprocess.run(["mount", "--bind", str(outside), str(sandbox_dir / "extra")], check=True)
        runtime.kill("ispacetest0000000000")
        assert (outside / "keep").read_text() == "host data"
        assert mounted_under(sandbox_dir) == []
        assert not sandbox_dir.exists()
        assert runtime.leftovers() == set()
    finally:
        subprocess.run(["umount", "--lazy", str(sandbox_dir / "extra")], capture_output=True, check=False)
        runtime.kill("ispacetest0000000000")
        runtime.close()


def test_source_mounted_is_exact(tmp_path):
    """Two trees with the same directory name (content-addressed layers of two servers): only the
    one bound somewhere counts as in use."""
    import subprocess

    from sandlot.hostfs import source_mounted

    a, b, point = tmp_path / "a" / "same", tmp_path / "b" / "same", tmp_path / "point"
    for d in (a / "tree", b / "tree", point):
        d.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(b / "tree"), str(point)], check=True)
    try:
        assert source_mounted(b) and not source_mounted(a)
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert not source_mounted(b)
