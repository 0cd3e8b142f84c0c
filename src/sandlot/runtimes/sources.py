"""Template roots and layers, each bound once at a mount point of its own, for sandboxes to clone.

A sandbox's lower layers are id-mapped clones of the template's rootfs and layers (open_tree,
layers/mount.py). Cloning a directory makes the kernel check every mount below the mount that
holds it (has_locked_children: is_subdir per child). The state dir sits on the host's `/` like the
sandboxes' own mounts (their disks, lowers: 3 per sandbox), so with 2000 alive each create walked
~6000 mounts twice (perf: is_subdir and __do_loopback ~9% of the server's CPU). A bind of its own
has no mount below it: the clone of it walks none. Only the template's rootfs is bound: a
snapshot's layers are collected by the layer store once nothing uses them, and a bind is a use.

The binds live in `<run dir>/.sources/` until the runtime closes (a sandbox's clone does not
depend on them); a crashed server's are detached at the next start. A source replaced on disk (a
rebuilt template at the same path: another inode) gets a new bind, and the old one goes; so does
the bind of a source deleted, at most PRUNE_S later, so that its disk space is not held until the
server stops. The binds do not count as uses of their sources (hostfs's source_in_use): a
replaced template no sandbox uses is swept as before.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from .. import syscalls
from ..hostfs import SOURCE_CACHE as DIR
PRUNE_S = 10.0  # binds of sources deleted or replaced are looked for at most this often


class Sources:
    def __init__(self, run_dir: Path):
        self.dir = run_dir / DIR
        self._binds: dict[str, tuple[tuple[int, int], Path]] = {}  # source path -> ((dev, ino), bind)
        self._lock = threading.Lock()
        self._pruned = time.monotonic()
        self._detach_all()  # a crashed server's
        self.dir.mkdir(mode=0o700, exist_ok=True)

    def of(self, path: Path) -> Path:
        """A path to clone `path` from: its bind (made now if it has none for this inode)."""
        if time.monotonic() - self._pruned > PRUNE_S:
            self._prune()
        key = _key(str(path))
        if key is None:
            raise FileNotFoundError(f"no such source: {path}")
        with self._lock:
            found = self._binds.get(str(path))
            if found is not None and found[0] == key:
                return found[1]
            target = Path(tempfile.mkdtemp(dir=self.dir))
            syscalls.mount(str(path), str(target), None, syscalls.MS_BIND)
            # its own peer group: the host's mount events under / are not copied onto it
            syscalls.mount("none", str(target), None, syscalls.MS_PRIVATE)
            self._binds[str(path)] = (key, target)
        if found is not None:  # replaced on disk: its sandboxes hold clones, not this bind
            _detach(found[1])
        return target

    def _prune(self) -> None:
        self._pruned = time.monotonic()
        with self._lock:
            gone = [path for path, (key, _) in self._binds.items() if _key(path) != key]
            binds = [self._binds.pop(path)[1] for path in gone]
        for target in binds:
            _detach(target)

    def close(self) -> None:
        with self._lock:
            binds, self._binds = list(self._binds.values()), {}
        for _, target in binds:
            _detach(target)
        self._detach_all()

    def _detach_all(self) -> None:
        if not self.dir.is_dir():
            return
        for target in self.dir.iterdir():
            _detach(target)


def _key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _detach(target: Path) -> None:
    try:
        syscalls.umount(str(target))  # lazily
    except OSError:
        pass  # not mounted (a crash between mkdir and mount)
    try:
        target.rmdir()
    except OSError:
        pass
