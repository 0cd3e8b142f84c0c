"""The volume content API's file operations, on the host, inside a tree sandboxes write into.

Every path is resolved one component at a time from the volume's root with O_NOFOLLOW directory
fds: no `..`, no symlink on the way is followed (a sandbox may have planted one pointing at the
host); the last component is acted on relative to its parent's fd, never through a link.
Ownership is in the template uid space (the default user is 1000), as sandboxes see it.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from typing import BinaryIO
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .. import _exceptions as E

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
DEFAULT_UID = DEFAULT_GID = 1000
MAX_DEPTH = 32


def parts(path: str) -> list[str]:
    """The path's components below the volume root (absolute or relative to it; no `..`)."""
    if not isinstance(path, str) or "\0" in path:
        raise E.PathError("invalid path")
    found = [p for p in PurePosixPath("/" + path.lstrip("/")).parts[1:] if p != "."]
    if ".." in found:
        raise E.PathError("'..' is not allowed in a volume path")
    return found


class VolumeFiles:
    def __init__(self, root: Path):
        self.root = root

    @contextmanager
    def _parent(self, path: str, create: bool = False, uid: int = DEFAULT_UID, gid: int = DEFAULT_GID,
                mode: int = 0o755) -> Iterator[tuple[int, str]]:
        """(fd of the parent directory, last name); `create` makes missing parents."""
        names = parts(path)
        fd = os.open(self.root, _DIR)
        try:
            for name in names[:-1]:
                try:
                    nxt = os.open(name, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise E.FileNotFound(f"path '{path}' does not exist") from None
                    os.mkdir(name, mode, dir_fd=fd)
                    os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                    nxt = os.open(name, _DIR, dir_fd=fd)
                except (NotADirectoryError, OSError) as e:
                    if isinstance(e, NotADirectoryError) or e.errno == 40:  # ELOOP: a symlink
                        raise E.PathError(f"'{name}' in '{path}' is not a directory") from None
                    raise
                os.close(fd)
                fd = nxt
            yield fd, (names[-1] if names else ".")
        finally:
            os.close(fd)

    def stat(self, path: str) -> dict:
        with self._parent(path) as (fd, name):
            return self._entry(fd, name, "/" + "/".join(parts(path)))

    @staticmethod
    def _entry(fd: int, name: str, shown: str, tries: int = 3) -> dict:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise E.FileNotFound(f"path '{shown}' does not exist") from None
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) \
            else "symlink" if stat.S_ISLNK(st.st_mode) else "unknown"
        entry = {"name": PurePosixPath(shown).name or "/", "type": kind, "path": shown, "size": st.st_size,
                 "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                 **{k: datetime.fromtimestamp(getattr(st, f"st_{k}"), UTC).isoformat()
                    for k in ("atime", "mtime", "ctime")}}
        if kind == "symlink":
            try:
                entry["target"] = os.readlink(name, dir_fd=fd)
            except OSError:  # replaced or removed since the stat (a sandbox writes here): what is there now
                if tries <= 1:
                    raise E.PathError(f"path '{shown}' changes as it is read") from None
                return VolumeFiles._entry(fd, name, shown, tries - 1)
        return entry

    def list(self, path: str, depth: int = 1) -> list[dict]:
        if not 1 <= depth <= MAX_DEPTH:
            raise E.InvalidArgument(f"depth must be between 1 and {MAX_DEPTH}")
        base = "/" + "/".join(parts(path))
        with self._parent(path) as (parent, name):
            try:
                fd = os.open(name, _DIR, dir_fd=parent)
            except FileNotFoundError:
                raise E.FileNotFound(f"path '{base}' does not exist") from None
            except OSError:
                raise E.InvalidArgument(f"path '{base}' is not a directory") from None
        found: list[dict] = []
        stack = [(fd, base.rstrip("/"), 1)]
        try:
            while stack:
                fd, prefix, level = stack[-1]
                for n in sorted(os.listdir(fd)):
                    try:
                        entry = self._entry(fd, n, f"{prefix}/{n}")
                    except E.FileNotFound:
                        continue  # removed since the listing (a sandbox writes here)
                    found.append(entry)
                    if entry["type"] == "directory" and level < depth:
                        try:
                            sub = os.open(n, _DIR, dir_fd=fd)
                        except OSError:  # replaced or removed since its stat: listed, not entered
                            continue
                        stack.insert(-1, (sub, f"{prefix}/{n}", level + 1))
                stack.pop()
                os.close(fd)
        finally:
            for fd, _, _ in stack:
                os.close(fd)
        return found

    def make_dir(self, path: str, uid: int, gid: int, mode: int, force: bool) -> dict:
        if not parts(path):
            raise E.AlreadyExists("the volume's root exists")
        with self._parent(path, create=force, uid=uid, gid=gid) as (fd, name):
            try:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    if not force:
                        raise E.AlreadyExists(f"path '{path}' exists") from None
                    if not stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise E.AlreadyExists(f"path '{path}' exists and is not a directory") from None
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile (a sandbox writes here)
                raise E.FileNotFound(f"path '{path}' does not exist") from None
            _chmod(fd, name, mode, path)
            return self._entry(fd, name, "/" + "/".join(parts(path)))

    def open(self, path: str) -> BinaryIO:
        """The regular file at `path`, open for reading. The caller streams it: a file may be as
        large as the volume (a sparse one far larger: a sandbox's `truncate -s 1T`)."""
        with self._parent(path) as (fd, name):
            try:
                f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                raise E.FileNotFound(f"path '{path}' does not exist") from None
            except OSError:
                raise E.InvalidArgument(f"path '{path}' is not a file") from None
            try:
                if not stat.S_ISREG(os.fstat(f).st_mode):
                    raise E.InvalidArgument(f"path '{path}' is not a file")
            except BaseException:
                os.close(f)
                raise
            return os.fdopen(f, "rb")

    def write(self, path: str, chunks: Iterable[bytes], uid: int, gid: int, mode: int, force: bool) -> dict:
        """Write `chunks` (read as they come: an upload is never held whole) to a new file beside
        `path`, renamed over it once complete: a failed or abandoned upload leaves the old file
        whole. What is at `path` must be a regular file, or nothing."""
        if not parts(path):
            raise E.InvalidArgument("give a file path")
        with self._parent(path, create=force, uid=uid, gid=gid) as (fd, name):
            try:
                if not stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise E.InvalidArgument(f"path '{path}' is not a file")
            except FileNotFoundError:
                pass
            tmp = f".sandlot-upload-{secrets.token_hex(8)}"
            try:
                f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                            dir_fd=fd)
            except OSError as e:
                raise _full(e) from None
            try:
                for chunk in chunks:
                    view, done = memoryview(chunk), 0
                    while done < len(chunk):
                        done += os.write(f, view[done:])
                os.fchown(f, uid, gid)
                os.fchmod(f, mode)
                os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # never follows a link at `name`
            except BaseException as e:
                os.unlink(tmp, dir_fd=fd)
                if isinstance(e, IsADirectoryError):  # made at `path` meanwhile
                    raise E.InvalidArgument(f"path '{path}' is not a file") from None
                raise _full(e) if isinstance(e, OSError) else e
            finally:
                os.close(f)
            return self._entry(fd, name, "/" + "/".join(parts(path)))

    def update(self, path: str, uid: int | None, gid: int | None, mode: int | None) -> dict:
        with self._parent(path) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False) if parts(path) else os.fstat(fd)
                if uid is not None or gid is not None:
                    os.chown(name, -1 if uid is None else uid, -1 if gid is None else gid, dir_fd=fd,
                             follow_symlinks=False)
            except FileNotFoundError:
                raise E.FileNotFound(f"path '{path}' does not exist") from None
            if mode is not None and not stat.S_ISLNK(st.st_mode):
                _chmod(fd, name, mode, path)
            return self._entry(fd, name, "/" + "/".join(parts(path)))

    def remove(self, path: str) -> None:
        if not parts(path):
            raise E.InvalidArgument("the volume's root cannot be removed")
        with self._parent(path) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise E.FileNotFound(f"path '{path}' does not exist") from None
            try:
                if stat.S_ISDIR(st.st_mode):
                    _remove_dir(fd, name)
                else:
                    os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                raise E.FileNotFound(f"path '{path}' does not exist") from None
            except OSError as e:  # a sandbox changed the tree meanwhile: made a link, a file, a directory
                if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
                    raise
                raise E.PathError(f"path '{path}' changed as it was removed: {e.strerror}") from None


def _chmod(fd: int, name: str, mode: int, path: str) -> None:
    """chmod, never through a symlink: the sandbox may swap one in at `name` after any check (a
    link followed here, as root, would chmod a host file). A link has no mode of its own: Linux
    refuses it (Python 3.11 says so with a ValueError)."""
    try:
        os.chmod(name, mode, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        raise E.FileNotFound(f"path '{path}' does not exist") from None
    except (ValueError, NotImplementedError, OSError) as e:
        if isinstance(e, OSError) and e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        raise E.InvalidArgument(f"path '{path}' is a symlink, which has no mode of its own") from None


def _full(error: OSError) -> Exception:
    """ENOSPC as the volume's quota; any other error as it is."""
    if error.errno == errno.ENOSPC:
        return E.ResourceExhausted("the volume is full (its size is its quota)")
    return error


def _remove_dir(parent: int, name: str) -> None:
    """rm -r through fds, iteratively (never following a link)."""
    stack = [(parent, name, None)]
    try:
        _remove_stack(stack)
    finally:  # failed midway: the fds still open
        for _, _, fd in stack:
            if fd is not None:
                os.close(fd)


def _remove_stack(stack: list) -> None:
    while stack:
        p, n, fd = stack[-1]
        if fd is None:
            fd = os.open(n, _DIR, dir_fd=p)
            stack[-1] = (p, n, fd)
        sub = None
        for child in os.listdir(fd):
            try:
                if stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                    sub = child
                    break
                os.unlink(child, dir_fd=fd)
            except FileNotFoundError:
                pass  # removed meanwhile (a sandbox writes here)
        if sub is not None:
            stack.append((fd, sub, None))
            continue
        stack.pop()
        os.close(fd)
        os.rmdir(n, dir_fd=p)
