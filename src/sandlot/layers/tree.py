"""Copying a directory tree into a layer, exactly, and hashing it on the way (the layer's digest).

Two copies go through here: a sandbox's writable layer (overlay upper) committed as a layer, its
owners shifted from the sandbox's host uid range (base..base+65535) back to the template space
(0..65535); and layers merged into one when a stack grows too deep (`merge`, no shift).

What a layer holds, exactly: directories, regular files (holes kept), symlinks, hard links, fifos,
modes, owners, nanosecond mtimes, `user.*` xattrs, POSIX ACLs (ids shifted), file capabilities
(namespaced v3 caps of the sandbox's root made plain v2 caps of the template's root), and
overlay's own markers: whiteouts (character devices 0:0) and opaque directories
(`trusted.overlay.opaque`). Other `trusted.overlay.*` xattrs (origin, impure...) describe one
overlay mount and are dropped; so are sockets and device nodes other than whiteouts (a sandbox
cannot make real ones; mounts are nodev anyway).

The source may be a hostile sandbox's tree: it is walked through directory fds, never following a
symlink (O_NOFOLLOW; xattrs through /proc/self/fd/DIR/NAME with follow_symlinks=False), fifos never
opened. The caller freezes the sandbox for a consistent copy; a tree changed meanwhile can at worst
copy inconsistently, never reach outside itself.

The digest is sha256 over a canonical form: each entry in depth-first order of sorted names, as
length-prefixed fields (path, type, mode, uid, gid, mtime_ns, sorted xattrs, then the file's size
and its non-zero 1 MiB blocks as (index, sha256), the symlink's target, or the hard link's first
path). Two copies of the same tree have the same digest, whatever they were copied from and however
sparse their files are.
"""

from __future__ import annotations

import hashlib
import os
import resource
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from .. import _exceptions as E

OPAQUE = "trusted.overlay.opaque"
UID_RANGE = 65536
NOBODY = 65534  # owners outside the sandbox's range (none should exist) become nobody
# Two fds (source and copy) are held per directory level: past this depth the copy is refused
# rather than run out of fds; a tree that deep is a sandbox being hostile, not a user's project.
MAX_DEPTH = 1000
# Names listed and not yet copied (the directory being copied and its ancestors' rest) cost the
# server ~600 bytes each for 255-byte names: hard links make millions of names on a disk of 2 GiB
# in a minute (~5 GB to list). Past this many the copy is refused rather than the server's memory.
MAX_NAMES = 1 << 20
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CAP = "security.capability"
_ACLS = ("system.posix_acl_access", "system.posix_acl_default")
_ACL_USER, _ACL_GROUP = 2, 8
_CAP_V3, _CAP_V2 = 0x03000000, 0x02000000


@dataclass(frozen=True)
class CopyResult:
    digest: str  # "sha256:<hex>"
    bytes: int  # file data copied (holes excluded)
    entries: int


class _Shift:
    """Host ids of the source -> ids in the layer."""

    def __init__(self, base: int):
        self.base = base

    def __call__(self, uid: int) -> int:
        if self.base == 0:
            return uid
        return uid - self.base if self.base <= uid < self.base + UID_RANGE else NOBODY


class _Copier:
    def __init__(self, shift: int):
        self.shift = _Shift(shift)
        self.hash = hashlib.sha256()
        self.bytes = 0
        self.entries = 0
        self.links: dict[tuple[int, int], bytes] = {}  # (dev, ino) -> first path copied, relative

    # ---- canonical form ----------------------------------------------------------------------

    def record(self, *fields: bytes | str | int) -> None:
        for f in fields:
            b = f if isinstance(f, bytes) else str(f).encode()
            self.hash.update(struct.pack(">Q", len(b)) + b)
        self.hash.update(b"\n")
        self.entries += 1

    # ---- xattrs ------------------------------------------------------------------------------

    def xattrs(self, dir_fd: int, name: str, is_dir: bool) -> list[tuple[str, bytes]]:
        path = f"/proc/self/fd/{dir_fd}/{name}"
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return []
        found = []
        for key in sorted(names):
            keep = key.startswith("user.") or key == _CAP or key in _ACLS or (key == OPAQUE and is_dir)
            if not keep:
                continue
            try:
                value = os.getxattr(path, key, follow_symlinks=False)
            except OSError:
                continue
            value = self._translate(key, value)
            if value is not None:
                found.append((key, value))
        return found

    def _translate(self, key: str, value: bytes) -> bytes | None:
        if key == _CAP:
            if len(value) < 4:
                return None
            magic = struct.unpack_from("<I", value)[0]
            if magic & 0xFF000000 == _CAP_V3 and len(value) >= 24:
                rootid = struct.unpack_from("<I", value, 20)[0]
                if self.shift(rootid) != 0:
                    return None  # caps of a root that is not the sandbox's: meaningless here
                return struct.pack("<I", _CAP_V2 | (magic & 0x00FFFFFF)) + value[4:20]
            return value
        if key in _ACLS and self.shift.base:
            if len(value) < 4 or (len(value) - 4) % 8:
                return None
            out = bytearray(value[:4])
            for off in range(4, len(value), 8):
                tag, perm, ident = struct.unpack_from("<HHI", value, off)
                if tag in (_ACL_USER, _ACL_GROUP):
                    ident = self.shift(ident)
                out += struct.pack("<HHI", tag, perm, ident)
            return bytes(out)
        return value

    @staticmethod
    def set_xattrs(dir_fd: int, name: str, xattrs: list[tuple[str, bytes]]) -> None:
        path = f"/proc/self/fd/{dir_fd}/{name}"
        for key, value in xattrs:
            os.setxattr(path, key, value, follow_symlinks=False)

    # ---- entries -----------------------------------------------------------------------------

    def meta(self, dst_fd: int, name: str, st: os.stat_result, xattrs, *, is_link: bool = False) -> None:
        """Owner, then mode (chown clears setuid bits), then xattrs (a write or chown clears
        security.capability), then times."""
        os.chown(name, self.shift(st.st_uid), self.shift(st.st_gid), dir_fd=dst_fd, follow_symlinks=False)
        if not is_link:
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)
        self.set_xattrs(dst_fd, name, xattrs)

    @staticmethod
    def times(dst_fd: int, name: str, st: os.stat_result) -> None:
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)

    def head(self, rel: bytes, kind: str, st: os.stat_result, xattrs) -> list:
        fields = [rel, kind, stat.S_IMODE(st.st_mode), self.shift(st.st_uid), self.shift(st.st_gid),
                  st.st_mtime_ns, len(xattrs)]
        for key, value in xattrs:
            fields += [key, value]
        return fields

    def copy_entry(self, src_fd: int, dst_fd: int, name: str, rel: bytes, st: os.stat_result) -> bool:
        """Copy one non-directory entry; False if it is of a kind layers do not hold."""
        mode = st.st_mode
        if st.st_nlink > 1 and (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                os.link(self.root / os.fsdecode(first), name, dst_dir_fd=dst_fd, follow_symlinks=False)
                self.record(rel, "link", first)
                return True
            self.links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISREG(mode):
            xattrs = self.xattrs(src_fd, name, False)
            extents = self.copy_file(src_fd, dst_fd, name, st)
            self.meta(dst_fd, name, st, xattrs)
            self.times(dst_fd, name, st)
            self.record(*self.head(rel, "file", st, xattrs), st.st_size, *extents)
        elif stat.S_ISLNK(mode):
            target = os.readlink(name, dir_fd=src_fd)
            xattrs = self.xattrs(src_fd, name, False)
            os.symlink(target, name, dir_fd=dst_fd)
            self.meta(dst_fd, name, st, xattrs, is_link=True)
            self.times(dst_fd, name, st)
            self.record(*self.head(rel, "symlink", st, xattrs), os.fsencode(target))
        elif stat.S_ISCHR(mode) and st.st_rdev == 0:  # overlay whiteout
            os.mknod(name, stat.S_IFCHR | 0o000, 0, dir_fd=dst_fd)
            self.meta(dst_fd, name, st, [])
            self.times(dst_fd, name, st)
            self.record(rel, "whiteout")
        elif stat.S_ISFIFO(mode):
            xattrs = self.xattrs(src_fd, name, False)
            os.mkfifo(name, 0o600, dir_fd=dst_fd)
            self.meta(dst_fd, name, st, xattrs)
            self.times(dst_fd, name, st)
            self.record(*self.head(rel, "fifo", st, xattrs))
        else:
            return False
        return True

    def copy_file(self, src_fd: int, dst_fd: int, name: str, st: os.stat_result) -> list:
        """Copy the file's data in CHUNK blocks: blocks of zeros (holes, or zeros written) are left
        as holes and not hashed; returns [block index, sha256] of the others, so the digest depends
        on the content alone, however sparse a copy of it is (an archive extracts files dense)."""
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_fd)
        try:
            if os.fstat(fd).st_ino != st.st_ino:  # replaced meanwhile (the caller froze the sandbox)
                raise E.RuntimeFailure(f"{name!r} changed while it was copied")
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_fd)
            try:
                blocks = []
                block = 0
                while block * CHUNK < st.st_size:
                    try:  # skip holes without reading them
                        block = max(block, os.lseek(fd, block * CHUNK, os.SEEK_DATA) // CHUNK)
                    except OSError:  # ENXIO: no data past this point
                        break
                    data = os.pread(fd, CHUNK, block * CHUNK)
                    if not data:
                        break
                    if data != bytes(len(data)):
                        view = memoryview(data)
                        written = 0
                        while written < len(data):
                            written += os.pwrite(out, view[written:], block * CHUNK + written)
                        self.bytes += len(data)
                        blocks += [block, hashlib.sha256(data).digest()]
                    block += 1
                os.ftruncate(out, st.st_size)
                return blocks
            finally:
                os.close(out)
        finally:
            os.close(fd)

    # ---- directories -------------------------------------------------------------------------

    def copy(self, src: Path, dst: Path) -> CopyResult:
        """Copy the tree under `src` into the new directory `dst` (whose parent exists)."""
        enough_fds()
        self.root = dst
        src_fd = os.open(src, _DIR_FLAGS)
        try:
            st = os.fstat(src_fd)
            os.mkdir(dst, 0o700)
            dst_fd = os.open(dst, _DIR_FLAGS)
            try:
                xattrs = self._dir_xattrs(src_fd)
                self._dir_meta(dst_fd, st, xattrs)
                self.record(*self.head(b".", "dir", st, xattrs))
                self._walk(src_fd, dst_fd, b"")
                os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        return CopyResult("sha256:" + self.hash.hexdigest(), self.bytes, self.entries)

    def _dir_xattrs(self, fd: int) -> list[tuple[str, bytes]]:
        return self.xattrs(fd, ".", True)

    def _dir_meta(self, fd: int, st: os.stat_result, xattrs) -> None:
        os.fchown(fd, self.shift(st.st_uid), self.shift(st.st_gid))
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        self.set_xattrs(fd, ".", xattrs)

    def _walk(self, src_fd: int, dst_fd: int, rel: bytes) -> None:
        # iterative: sandboxes make trees deeper than Python's recursion limit. Each level below the
        # top holds its two directory fds until it is left; a refusal or an error part-way closes them
        stack = [(src_fd, dst_fd, rel, _sorted_names(src_fd, MAX_NAMES), None)]
        try:
            while stack:
                s_fd, d_fd, prefix, names, st = stack[-1]
                if not names:
                    stack.pop()
                    if st is not None:
                        try:
                            os.utime(d_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                        finally:
                            os.close(d_fd)
                            os.close(s_fd)
                    continue
                self._enter(stack, s_fd, d_fd, prefix, names.pop())
        finally:
            for s_fd, d_fd, _, _, st in stack:
                if st is not None:
                    os.close(d_fd)
                    os.close(s_fd)

    def _enter(self, stack: list, s_fd: int, d_fd: int, prefix: bytes, name: str) -> None:
        """Copy one entry of the directory on top of the stack; a directory is pushed, open."""
        path = prefix + os.fsencode(name)
        try:
            st = os.stat(name, dir_fd=s_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            self.copy_entry(s_fd, d_fd, name, path, st)
            return
        if len(stack) >= MAX_DEPTH:
            raise E.InvalidArgument(f"directories nest deeper than {MAX_DEPTH} levels: cannot snapshot them")
        child = os.open(name, _DIR_FLAGS, dir_fd=s_fd)
        try:
            if os.fstat(child).st_ino != st.st_ino:
                raise E.RuntimeFailure(f"{name!r} changed while it was copied")
            os.mkdir(name, 0o700, dir_fd=d_fd)
            out = os.open(name, _DIR_FLAGS, dir_fd=d_fd)
        except BaseException:
            os.close(child)
            raise
        stack.append((child, out, path + b"/", [], st))  # owned by the stack from here
        xattrs = self._dir_xattrs(child)
        self._dir_meta(out, st, xattrs)
        self.record(*self.head(path, "dir", st, xattrs))
        stack[-1][3].extend(_sorted_names(child, MAX_NAMES - sum(len(level[3]) for level in stack)))


def _sorted_names(fd: int, room: int | None = None) -> list[str]:
    """Names in the directory, in reverse order (popped from the end: sorted walk); refused past
    `room` of them, counted as they are read."""
    names = []
    with os.scandir(fd) as entries:
        for entry in entries:
            names.append(os.fsencode(entry.name))
            if room is not None and len(names) > room:
                raise E.InvalidArgument(f"more than {MAX_NAMES} names in the directories being copied")
    names.sort(reverse=True)
    return [os.fsdecode(n) for n in names]


def enough_fds(per_level: int = 2) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = per_level * MAX_DEPTH + 1024
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def copy_tree(src: Path, dst: Path, uid_base: int = 0) -> CopyResult:
    """Copy `src` into the new directory `dst`, owners shifted down by `uid_base` (the sandbox's
    host uid base; 0 for a layer or a directory already in template space)."""
    return _Copier(uid_base).copy(src, dst)

