"""The layer copy on the host (no server): exact metadata, uid shift, overlay markers, digest,
merge as overlay reads it, and a hostile tree (symlinks, fifos) never followed or opened."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from sandlot import _exceptions as E
from sandlot.hostfs import remove_tree
from sandlot.layers import tree
from sandlot.layers.store import LayerStore
from sandlot.layers.merge import merge
from sandlot.layers.tree import OPAQUE, copy_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layers are made by root")
BASE = 1_000_000 + 7 * 65536


def snapshot_of(root: Path) -> dict:
    """Everything a layer must keep, by path."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""][:]:
            p = Path(dirpath) / name if name else Path(dirpath)
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "rdev": st.st_rdev,
                     "xattrs": {k: os.getxattr(p, k, follow_symlinks=False)
                                for k in sorted(os.listxattr(p, follow_symlinks=False))}}
            if not stat.S_ISDIR(st.st_mode):
                entry["mtime"] = st.st_mtime_ns
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                entry["data"] = p.read_bytes()
                entry["nlink"] = st.st_nlink
            found[rel] = entry
    return found


def make_upper(root: Path, base: int) -> None:
    """What a sandbox's writable layer holds after some work, owned by its host uid range."""
    root.mkdir()
    (root / "home" / "user").mkdir(parents=True)
    f = root / "home" / "user" / "a.txt"
    f.write_text("hello")
    os.setxattr(f, "user.e2b.owner", b"me")
    os.chmod(f, 0o640)
    os.link(f, root / "home" / "user" / "hard.txt")
    os.symlink("/etc/passwd", root / "home" / "user" / "link")
    os.symlink("a.txt", root / "home" / "user" / "rel")
    os.mkfifo(root / "home" / "user" / "fifo")
    sparse = root / "home" / "user" / "sparse"
    with open(sparse, "wb") as out:
        out.seek(50 << 20)
        out.write(b"end")
    os.mknod(root / "home" / "user" / "gone", stat.S_IFCHR, 0)  # a whiteout
    opaque = root / "opt" / "fresh"
    opaque.mkdir(parents=True)
    os.setxattr(opaque, OPAQUE, b"y")
    os.setxattr(opaque, "trusted.overlay.origin", b"junk")  # dropped: describes one mount only
    suid = root / "usr" / "bin" / "tool"
    suid.parent.mkdir(parents=True)
    suid.write_bytes(b"\x7fELF")
    for p in [*root.rglob("*"), root]:
        rel = p.relative_to(root)
        owner = base + (1000 if "home" in rel.parts else 0)
        os.chown(p, owner, owner, follow_symlinks=False)
    os.chmod(suid, 0o4755)  # after chown, which clears it
    os.setxattr(f, "system.posix_acl_access", acl(base + 1001))


def acl(user: int) -> bytes:
    """A POSIX ACL xattr granting `user` read (as setfacl writes it: version 2, sorted entries)."""
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, user), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
               (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_commit_shifts_owners_and_keeps_everything(tmp_path):
    src = tmp_path / "upper"
    make_upper(src, BASE)
    result = copy_tree(src, tmp_path / "layer", uid_base=BASE)
    before, after = snapshot_of(src), snapshot_of(tmp_path / "layer")
    assert set(before) == set(after)
    for rel, entry in before.items():
        got = after[rel]
        assert got["uid"] == entry["uid"] - BASE and got["gid"] == entry["gid"] - BASE, rel
        assert got["mode"] == entry["mode"], rel
        for key in ("target", "data", "rdev", "mtime", "nlink"):
            assert got.get(key) == entry.get(key), (rel, key)
        want = {k: v for k, v in entry["xattrs"].items() if k != "trusted.overlay.origin"}
        if "system.posix_acl_access" in want:  # the ACL's named user shifted too
            assert want.pop("system.posix_acl_access") == acl(BASE + 1001)
            assert got["xattrs"].pop("system.posix_acl_access") == acl(1001)
        assert got["xattrs"] == want, rel
    assert after["opt/fresh"]["xattrs"][OPAQUE] == b"y"
    assert stat.S_ISCHR(after["home/user/gone"]["mode"]) and after["home/user/gone"]["rdev"] == 0
    assert os.stat(tmp_path / "layer/home/user/a.txt").st_ino == os.stat(tmp_path / "layer/home/user/hard.txt").st_ino
    assert os.stat(tmp_path / "layer/home/user/sparse").st_blocks < 1024  # the hole stayed a hole
    assert result.digest.startswith("sha256:") and result.bytes < 1 << 20
    # the same tree hashes the same, wherever it came from; any change shows
    assert copy_tree(tmp_path / "layer", tmp_path / "again").digest == result.digest
    os.chmod(tmp_path / "again/home/user/a.txt", 0o600)
    assert copy_tree(tmp_path / "again", tmp_path / "changed").digest != result.digest


def test_hostile_tree_is_never_followed(tmp_path):
    src = tmp_path / "upper"
    src.mkdir()
    try:
        (src / "escape").symlink_to("/etc")
        os.mkfifo(src / "pipe")  # opening it would block the copy forever
        os.mknod(src / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a real device: not copied
        fd = os.open(src, os.O_RDONLY)
        for _ in range(tree.MAX_DEPTH + 5):  # deeper than PATH_MAX allows by path
            os.mkdir("d", dir_fd=fd)
            fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
            os.close(parent)
        os.close(fd)
        open_fds = set(os.listdir("/proc/self/fd"))
        with pytest.raises(E.InvalidArgument, match="nest deeper"):
            copy_tree(src, tmp_path / "layer")
        # the refused walk's ~2000 fds were closed: none is open now that was not before (compared
        # as sets: the suite's other threads and finalizers may close one of theirs meanwhile)
        assert set(os.listdir("/proc/self/fd")) <= open_fds
        remove_tree(src / "d")
        remove_tree(tmp_path / "layer")
        copy_tree(src, tmp_path / "layer2")
        assert os.readlink(tmp_path / "layer2" / "escape") == "/etc"
        assert not (tmp_path / "layer2" / "dev").exists()
        assert stat.S_ISFIFO(os.lstat(tmp_path / "layer2" / "pipe").st_mode)
    finally:
        # pytest's own clean-up of its temp dirs recurses: trees this deep would fail it (a
        # RecursionError at the end of every later run on the machine); rm walks iteratively
        for made in tmp_path.iterdir():
            remove_tree(made)



def test_names_held_at_once_are_bounded(tmp_path, monkeypatch):
    """Hard links make millions of names on a small disk; listed at once they would take the
    server's memory: past MAX_NAMES pending (a directory and the rest of its ancestors) the copy is
    refused, fds closed."""
    monkeypatch.setattr(tree, "MAX_NAMES", 100)
    src = tmp_path / "upper"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "one").write_text("x")
    for i in range(60):  # ~60 names left in a/ while a/b/ is listed: 120 at once
        os.link(src / "a" / "one", src / "a" / f"n{i:02}")
        os.link(src / "a" / "one", src / "a" / "b" / f"n{i:02}")
    copy_tree(src / "a" / "b", tmp_path / "fits")  # 60 alone
    open_fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(E.InvalidArgument, match="names"):
        copy_tree(src, tmp_path / "layer")
    assert set(os.listdir("/proc/self/fd")) <= open_fds
    for i in range(150):
        (src / f"f{i}").touch()
    with pytest.raises(E.InvalidArgument, match="names"):
        copy_tree(src, tmp_path / "layer2")


def test_merge_is_what_overlay_shows(tmp_path):
    """Three layers merged into one, over a lower 'template', read the same through overlay as the
    three stacked."""
    template, l1, l2, l3 = (tmp_path / n for n in ("template", "l1", "l2", "l3"))
    for d in (template, l1, l2, l3):
        d.mkdir()
    (template / "keep").write_text("t")
    (template / "deleted").write_text("t")
    (template / "dir").mkdir()
    (template / "dir" / "from-template").write_text("t")
    (l1 / "dir").mkdir()
    (l1 / "dir" / "one").write_text("1")
    (l1 / "replaced").write_text("1")
    os.mknod(l2 / "deleted", stat.S_IFCHR, 0)
    (l2 / "replaced").write_text("2")
    (l2 / "redone").mkdir()
    os.setxattr(l2 / "redone", OPAQUE, b"y")
    (l2 / "redone" / "x").write_text("2")
    os.mknod(l3 / "dir", stat.S_IFCHR, 0)  # dir removed...
    (l1 / "later").mkdir()
    (l1 / "later" / "old").write_text("1")
    os.mknod(l2 / "later", stat.S_IFCHR, 0)
    (l3 / "later").mkdir()  # ...and made again above a whiteout: must hide l1's and the template's
    (l3 / "later" / "new").write_text("3")
    merged = tmp_path / "merged"
    merge([l1, l2, l3], merged)

    def view(lowers: list[Path]) -> dict:
        point = tmp_path / ("view-" + str(len(lowers)))
        point.mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=" + ":".join(str(p) for p in [*reversed(lowers), template]), str(point)],
                       check=True)
        try:
            return {str(p.relative_to(point)): (p.read_text() if p.is_file() else None)
                    for p in point.rglob("*")}
        finally:
            subprocess.run(["umount", str(point)], check=True)

    seen = view([merged])
    assert seen == view([l1, l2, l3])
    assert "deleted" not in seen and "later/old" not in seen and "dir" not in seen
    assert seen["keep"] == "t" and seen["replaced"] == "2" and seen["later/new"] == "3"


def test_store_shares_counts_and_collects(tmp_path):
    store = LayerStore(tmp_path / "home")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    a = store.commit(src, "snapshot:a")
    b = store.commit(src, "snapshot:b")
    assert a == b and store.list() == [a]  # same content: one layer, two holders
    empty = tmp_path / "empty"
    empty.mkdir()
    assert store.commit(empty, "snapshot:c") is None
    store.release("snapshot:a")
    assert store.gc() == [] and store.exists(a)
    store.release("snapshot:b")
    assert store.gc() == [a]
    assert sorted(p.name for p in store.root.iterdir()) == [".lock", "layers.db", "layers.db-shm",
                                                            "layers.db-wal"] or not store.list()


def test_stack_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr("sandlot.layers.store.MAX_STACK", 3)
    store = LayerStore(tmp_path / "home")
    digests = []
    for i in range(5):
        src = tmp_path / f"s{i}"
        src.mkdir()
        (src / f"f{i}").write_text(str(i))
        (src / "same").write_text(str(i))
        digests.append(store.commit(src, f"t:{i}"))
    stacked = store.stack(digests, "sandbox:x")
    assert len(stacked) == 3 and stacked[1:] == digests[3:]
    bottom = store.path(stacked[0])
    assert sorted(p.name for p in bottom.iterdir()) == ["f0", "f1", "f2", "same"]
    assert (bottom / "same").read_text() == "2"
    assert set(store.held_by("sandbox:x")) == set(stacked)


def test_digest_depends_on_content_not_on_holes(tmp_path):
    dense, sparse = tmp_path / "dense", tmp_path / "sparse"
    for d in (dense, sparse):
        d.mkdir()
    data = b"\0" * (3 << 20) + b"tail"
    (dense / "f").write_bytes(data)
    with open(sparse / "f", "wb") as f:
        f.seek(3 << 20)
        f.write(b"tail")
    for d in (dense, sparse):
        os.utime(d / "f", ns=(0, 0))
        os.utime(d, ns=(0, 0))
    a, b = copy_tree(dense, tmp_path / "a"), copy_tree(sparse, tmp_path / "b")
    assert a.digest == b.digest
    assert (tmp_path / "a" / "f").read_bytes() == data
    assert os.stat(tmp_path / "a" / "f").st_blocks * 512 < 1 << 20  # the zeros became a hole
