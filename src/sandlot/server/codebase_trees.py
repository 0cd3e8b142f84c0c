"""File trees of codebases on the host (server/codebase_store.py keeps them): paths that never go
through a symlink, hard-link copies, replaying a sandbox's overlay layer, merging a staged upload,
tar streams. Host root does all this, and a codebase holds whatever a sandbox committed, links to
anywhere included: nothing here follows a symlink of the tree (nor of a running sandbox's layer).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .. import _exceptions as E
from ..hostfs import remove_tree
from ..layers.tree import _DIR_FLAGS, MAX_DEPTH, MAX_NAMES, _sorted_names, enough_fds
from .envd.uploads import UploadTooLarge

OVERLAY_OPAQUE = "trusted.overlay.opaque"


def relative(path: str) -> PurePosixPath:
    """A path inside a codebase, as relative parts; `..` and NUL refused."""
    if not isinstance(path, str) or "\0" in path:
        raise E.PathError("a codebase path is a string without NUL bytes")
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise E.PathError(f"{path!r} leaves the codebase")
    return PurePosixPath(*parts) if parts else PurePosixPath()


def inside(tree: Path, rel: PurePosixPath, directory: bool = False) -> Path:
    """``tree / rel`` with no symlink on the way: a symlink in a codebase (a sandbox may commit one)
    may point anywhere on the host. ``directory``: the path itself is used as one (not a link)."""
    here = tree
    for part in rel.parts if directory else rel.parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise E.PathError(f"/{rel} goes through a symbolic link in the codebase")
    return tree.joinpath(*rel.parts) if rel.parts else tree


def make_parents(tree: Path, rel: PurePosixPath) -> None:
    here = tree
    for part in rel.parts[:-1]:
        here = here / part
        if here.is_symlink() or here.exists() and not here.is_dir():
            raise E.InvalidArgument(f"a parent of /{rel} is not a directory")
        here.mkdir(mode=0o755, exist_ok=True)


class Counted:
    """A read-only stream that fails past ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int):
        self.stream, self.limit, self.seen = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.seen += len(data)
        if self.seen > self.limit:
            raise UploadTooLarge(f"the upload is larger than {self.limit} bytes")
        return data


def copy_limited(data: BinaryIO, out, limit: int) -> None:
    seen = 0
    while chunk := data.read(1 << 20):
        seen += len(chunk)
        if seen > limit:
            raise UploadTooLarge(f"the upload is larger than {limit} bytes")
        out.write(chunk)


def link_copy(src: Path, dst: Path) -> None:
    """A copy of a tree whose files are hard links to the original's (never written in place)."""
    dst.mkdir(mode=stat.S_IMODE(src.stat().st_mode))
    for dirpath, dirs, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst / rel if rel != "." else dst
        for name in dirs:
            s = os.path.join(dirpath, name)
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), target / name)
            else:
                (target / name).mkdir(mode=stat.S_IMODE(st.st_mode))
        for name in files:
            s = os.path.join(dirpath, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), target / name)
            else:
                os.link(s, target / name)


def apply_layer(upper: Path, tree: Path) -> None:
    """Replay an overlay's upper layer onto ``tree`` (whose files are shared: replaced, never
    written in place).

    The sandbox runs on meanwhile and may swap any directory of its layer for a symlink to a host
    directory: the layer is walked through directory fds (O_NOFOLLOW), never by path, and each
    file copied from the fd it was opened as. An entry changed under the walk is skipped."""
    enough_fds(per_level=1)
    top = os.open(upper, _DIR_FLAGS)
    stack = [(top, tree, _names(top, MAX_NAMES))]
    try:
        while stack:
            fd, here, names = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            child = _apply_entry(fd, here, names.pop())
            if child is not None:
                if len(stack) >= MAX_DEPTH:
                    os.close(child[0])
                    raise E.InvalidArgument(f"directories nest deeper than {MAX_DEPTH} levels: cannot commit them")
                stack.append((*child, []))  # owned by the stack from here
                stack[-1][2].extend(_names(child[0], MAX_NAMES - sum(len(level[2]) for level in stack)))
    finally:
        for fd, *_ in stack:
            os.close(fd)


def _names(fd: int, room: int) -> list[str]:
    """The directory's names, bounded as a layer's copy bounds them (layers/tree.py)."""
    try:
        return _sorted_names(fd, room)
    except OSError:  # removed meanwhile
        return []


def _apply_entry(fd: int, here: Path, name: str) -> tuple[int, Path] | None:
    """Replay one entry of the layer's directory `fd` onto `here`; a directory is returned open."""
    t = here / name
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:  # swapped for something else meanwhile
            return None
        try:
            if _is_opaque(child) or not t.is_dir() or t.is_symlink():
                _remove(t)
                t.mkdir()
            os.chmod(t, stat.S_IMODE(os.fstat(child).st_mode))
        except BaseException:
            os.close(child)
            raise
        return child, t
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=fd)
        except OSError:
            return None
        _remove(t)
        os.symlink(target, t)
    elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        _remove(t)  # a whiteout: deleted
    elif stat.S_ISREG(st.st_mode):
        try:
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                return None
            _remove(t)
            shutil.copy2(f"/proc/self/fd/{src}", t)  # the file opened above, whatever its name is now
            os.chmod(t, stat.S_IMODE(os.fstat(src).st_mode) & 0o777)
        finally:
            os.close(src)
    else:  # fifos, sockets and devices are not part of a codebase
        _remove(t)
    return None


def merge(staging: Path, dest: Path) -> None:
    """Move what a tar unpacked in ``staging`` into ``dest`` (replacing what is there)."""
    for dirpath, dirs, files in os.walk(staging):
        rel = os.path.relpath(dirpath, staging)
        here = dest / rel if rel != "." else dest
        for name in dirs:
            target = here / name
            if target.is_symlink() or target.exists() and not target.is_dir():
                target.unlink()
            if not target.exists():
                target.mkdir()
            os.chmod(target, stat.S_IMODE((Path(dirpath) / name).stat().st_mode))
        for name in files:
            target = here / name
            if target.is_dir() and not target.is_symlink():
                remove_tree(target)
            os.replace(Path(dirpath) / name, target)


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OVERLAY_OPAQUE) == b"y"
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_symlink() or path.exists() and not path.is_dir():
        path.unlink()
    elif path.is_dir():
        remove_tree(path)


def tar_stream(top: Path) -> Iterator[bytes]:
    """An uncompressed tar of ``top``'s contents, produced as it is read."""
    class _Pipe(io.RawIOBase):
        def __init__(self):
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.chunks.append(bytes(b))
            return len(b)

    pipe = _Pipe()
    with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(dirpath, name)
                tar.add(full, arcname=os.path.relpath(full, top), recursive=False)
                if pipe.chunks:
                    yield b"".join(pipe.chunks)
                    pipe.chunks.clear()
    if pipe.chunks:
        yield b"".join(pipe.chunks)
