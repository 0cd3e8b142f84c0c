"""A storage backend in a local directory (objects are files under it; keys are relative paths).

The directory may be shared with other hosts, whose writers this host does not trust with its own
files: every key is reached through directory fds without following a symlink (a `layers` link
to /etc, a manifest linked to a host file), only regular files are read (a fifo would block the
read forever), a read stops at the size its caller takes, and an object is written under a name
of its own before it is renamed into place (two hosts exporting the same layer at once).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from .._exceptions import InvalidArgument, NotFound, ResourceExhausted, RuntimeFailure

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


class LocalBackend:
    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)

    def _parts(self, key: str) -> tuple[list[str], str]:
        """(the directories, the file name) of a key."""
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("..", ".") for p in parts):
            raise InvalidArgument(f"bad storage key {key!r}")
        return list(parts[:-1]), parts[-1]

    @contextmanager
    def _dir(self, parts: list[str], create: bool = False) -> Iterator[int]:
        """An fd of the directory `parts` under the root (the operator's, which may be a link)."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                if create:
                    try:
                        os.mkdir(part, dir_fd=fd)
                    except FileExistsError:
                        pass
                sub = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = sub
            yield fd
        finally:
            os.close(fd)

    def put(self, key: str, source: Path) -> None:
        dirs, name = self._parts(key)
        tmp = f".{name}.{secrets.token_hex(6)}.partial"
        try:
            with self._dir(dirs, create=True) as d, open(source, "rb") as src:
                try:
                    with open(os.open(tmp, _WRITE, 0o644, dir_fd=d), "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                    os.replace(tmp, name, src_dir_fd=d, dst_dir_fd=d)  # readers never see half an object
                finally:
                    try:
                        os.unlink(tmp, dir_fd=d)
                    except FileNotFoundError:
                        pass
        except OSError as e:  # a link or a file where a directory of the key should be
            raise RuntimeFailure(f"writing {key} to {self.location} failed: {e}") from e

    def get(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        """The object into the file `dest`; ResourceExhausted if it is larger than `max_bytes`."""
        dirs, name = self._parts(key)
        try:
            with self._dir(dirs) as d:
                fd = os.open(name, _READ, dir_fd=d)
        except FileNotFoundError:
            raise NotFound(f"{key} is not in {self.location}") from None
        except OSError:  # ELOOP, ENOTDIR: a link on the way
            raise InvalidArgument(f"{key} in {self.location} is not a file (links are not followed)") from None
        with open(fd, "rb") as src:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidArgument(f"{key} in {self.location} is not a file")
            os.set_blocking(fd, True)
            limit = max_bytes if max_bytes is not None else float("inf")
            if st.st_size > limit:
                raise _too_large(key, self.location, max_bytes)
            copied = 0
            with open(dest, "wb") as out:
                while chunk := src.read(CHUNK):
                    copied += len(chunk)
                    if copied > limit:  # grown since
                        raise _too_large(key, self.location, max_bytes)
                    out.write(chunk)

    def exists(self, key: str) -> bool:
        dirs, name = self._parts(key)
        try:
            with self._dir(dirs) as d:
                return stat.S_ISREG(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def delete(self, key: str) -> None:
        dirs, name = self._parts(key)
        try:
            with self._dir(dirs) as d:
                os.unlink(name, dir_fd=d)
        except FileNotFoundError:
            pass

    def list(self, prefix: str) -> list[str]:
        base = self.root
        if not base.is_dir():
            return []
        found = (str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and not p.is_symlink()
                 and not p.name.endswith(".partial"))
        return sorted(k for k in found if k.startswith(prefix))


def _too_large(key: str, location: str, max_bytes: int | None) -> ResourceExhausted:
    return ResourceExhausted(f"{key} in {location} is larger than {max_bytes} bytes", retry=False)
