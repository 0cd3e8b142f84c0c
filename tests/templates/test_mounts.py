"""Deleting old root filesystems: never while a sandbox mounts one, never through a mount inside."""

from __future__ import annotations

import subprocess

import pytest

from sandlot.templates.mounts import in_use, remove_tree


@pytest.fixture
def tree(needs_root, tmp_path):
    rootfs = tmp_path / ".old-base-1234abcd" / "rootfs"
    (rootfs / "proc").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    lower = tmp_path / "lower"
    lower.mkdir()
    yield rootfs, lower
    subprocess.run(["umount", "--lazy", str(lower)], capture_output=True, check=False)


def test_a_mounted_rootfs_is_in_use(tree):
    rootfs, lower = tree
    assert not in_use(rootfs.parent)
    subprocess.run(["mount", "--bind", "-o", "ro", str(rootfs), str(lower)], check=True)
    assert in_use(rootfs.parent)
    subprocess.run(["umount", str(lower)], check=True)
    assert not in_use(rootfs.parent)


def test_remove_tree_detaches_mounts_first(tree, tmp_path):
    rootfs, _ = tree
    subprocess.run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host data")
    (rootfs / "host").mkdir()
    subprocess.run(["mount", "--bind", str(outside), str(rootfs / "host")], check=True)
    remove_tree(rootfs.parent)
    assert not rootfs.parent.exists()
    assert (outside / "keep").read_text() == "host data"
