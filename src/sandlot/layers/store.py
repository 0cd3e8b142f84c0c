"""Layers on disk, content-addressed, shared and reference-counted: <home>/layers/.

    <home>/layers/<hex digest>/tree/     the layer (template uid space, host root's, never written again)
    <home>/layers/<hex digest>/meta.json digest, bytes, entries, made_at, made_from
    <home>/layers/layers.db              who holds which layer (SQLite): holders are strings such as
                                         "sandbox:<id>", "snapshot:<id>", "paused:<id>", "template:<name>"

A commit copies into `.new-<token>/` and, under the store's lock, renames it into place or, if a
layer with that digest exists already, drops the copy and shares the existing one; either way the
holder's reference is written under the same lock, so a concurrent `gc()` never removes a layer
between its making and its first holder. `gc()` removes layers no holder names and no mount uses.

Stacks are bounded: `stack()` of more than MAX_STACK layers merges the lower ones into one layer
(docs/snapshots.md has the measurement behind the number).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .. import _exceptions as E
from ..shared_db import SharedDb
from ..hostfs import remove_tree, source_mounted
from .merge import merge
from .tree import CopyResult, copy_tree

log = logging.getLogger("sandlot.layers")

# Above this many layers a stack's lower layers are merged into one. Overlay allows 500 lower
# layers, but each adds a lookup per path component that misses the upper layers; see
# docs/snapshots.md (lookup cost by depth) for why 16.
MAX_STACK = 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS refs (
    holder TEXT NOT NULL,
    layer TEXT NOT NULL,
    PRIMARY KEY (holder, layer)
);
CREATE INDEX IF NOT EXISTS refs_layer ON refs(layer);
"""


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise E.InvalidArgument(f"not a layer digest: {digest!r}")
    return value


class LayerStore:
    def __init__(self, home: Path):
        self.root = Path(home) / "layers"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # layers hold setuid files of sandboxes: no host user may reach them
        # WAL and synchronous=NORMAL as the server's store: WAL keeps it consistent
        self._db = SharedDb(self.root / "layers.db", SCHEMA, ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"))
        self._sql = self._db.sql
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # ---- paths -------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """The layer's tree (to stack under a sandbox, id-mapped)."""
        return self.root / _hex(digest) / "tree"

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_dir()

    def paths(self, digests: Sequence[str]) -> tuple[Path, ...]:
        missing = [d for d in digests if not self.exists(d)]
        if missing:
            raise E.NotFound(f"layer {missing[0]} is gone")
        return tuple(self.path(d) for d in digests)

    def meta(self, digest: str) -> dict:
        return json.loads((self.root / _hex(digest) / "meta.json").read_text())

    def list(self) -> list[str]:
        return sorted("sha256:" + p.name for p in self.root.iterdir() if len(p.name) == 64 and p.is_dir())

    # ---- making layers -----------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with self._thread_lock, open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def commit(self, source: Path, holder: str, *, uid_base: int = 0, made_from: str = "") -> str | None:
        """Copy the directory `source` into a layer held by `holder`; its digest, or None if the
        directory is empty (an empty layer changes nothing: it is not stacked).

        `uid_base`: the host uid that is root in `source` (a sandbox's range base for its writable
        layer); 0 for a directory already owned as the template's files are."""
        if not any(os.scandir(source)):
            return None
        return self._make(holder, made_from, lambda dst: copy_tree(source, dst, uid_base))

    def _make(self, holder: str, made_from: str, fill) -> str:
        new = self.root / f".new-{secrets.token_hex(6)}"
        # held while the copy runs: gc() removes only `.new-` directories whose lock is free
        busy = open(new.with_name(new.name + ".lock"), "w")
        fcntl.flock(busy, fcntl.LOCK_EX)
        new.mkdir(mode=0o700)
        started = time.monotonic()
        try:
            result: CopyResult = fill(new / "tree")
            os.chmod(new / "tree", os.stat(new / "tree").st_mode & 0o7777)  # as copied (not 0700)
            (new / "meta.json").write_text(json.dumps({
                "digest": result.digest, "bytes": result.bytes, "entries": result.entries,
                "made_at": time.time(), "made_from": made_from,
                "seconds": round(time.monotonic() - started, 3)}))
            with self._lock():
                final = self.root / _hex(result.digest)
                if final.exists():
                    log.info("layer %s already stored: shared", result.digest)
                else:
                    new.rename(final)
                self._sql("INSERT OR IGNORE INTO refs VALUES (?, ?)", (holder, result.digest))
            return result.digest
        finally:
            try:
                if new.exists():
                    remove_tree(new)
            finally:
                os.unlink(busy.name)
                busy.close()

    def stack(self, digests: Sequence[str], holder: str) -> list[str]:
        """`digests` (bottom first) as a stack of at most MAX_STACK layers, held by `holder`: the
        lower layers merged into one if there are more. The holder holds exactly the result."""
        digests = list(digests)
        if len(digests) > MAX_STACK:
            keep = MAX_STACK - 1
            lower, upper = digests[:len(digests) - keep], digests[len(digests) - keep:]
            paths = self.paths(lower)
            merged = self._make(holder, f"merge of {len(lower)} layers", lambda dst: merge(paths, dst))
            digests = [merged, *upper]
            log.info("stack of %d layers flattened to %d", len(lower) + keep, len(digests))
        self.hold(holder, digests, replace=True)
        return digests

    # ---- references --------------------------------------------------------------------------

    def hold(self, holder: str, digests: Iterable[str], *, replace: bool = False) -> None:
        digests = list(digests)
        for d in digests:
            _hex(d)
        with self._lock():
            missing = [d for d in digests if not self.exists(d)]
            if missing:
                raise E.NotFound(f"layer {missing[0]} is gone")
            if replace:
                self._sql("DELETE FROM refs WHERE holder=?", (holder,))
            self._sql("INSERT OR IGNORE INTO refs VALUES (?, ?)", [(holder, d) for d in digests], many=True)

    def release(self, holder: str) -> None:
        with self._lock():
            self._sql("DELETE FROM refs WHERE holder=?", (holder,))

    def held_by(self, holder: str) -> list[str]:
        return [r[0] for r in self._sql("SELECT layer FROM refs WHERE holder=?", (holder,))]

    def holders_of(self, digest: str) -> set[str]:
        return {r[0] for r in self._sql("SELECT holder FROM refs WHERE layer=?", (digest,))}

    def holders(self, prefix: str = "") -> set[str]:
        rows = self._sql("SELECT DISTINCT holder FROM refs WHERE holder LIKE ? ESCAPE '\\'",
                                (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",))
        return {r[0] for r in rows}

    def gc(self) -> list[str]:
        """Remove every layer no holder names and no mount uses (and leftovers of interrupted
        commits); returns the digests removed."""
        removed = []
        with self._lock():
            held = {r[0] for r in self._sql("SELECT DISTINCT layer FROM refs")}
            for p in self.root.iterdir():
                if p.name.startswith(".new-"):
                    if p.name.endswith(".lock"):
                        new = p.with_name(p.name[:-len(".lock")])
                        if not new.exists():  # a commit killed before its directory was made
                            self._remove_stale(new)
                    else:
                        self._remove_stale(p)
                    continue
                if p.name.startswith(".transfer-") and time.time() - p.lstat().st_mtime > 3600:
                    self._remove(p) if p.is_dir() else p.unlink(missing_ok=True)  # an interrupted transfer
                    continue
                if len(p.name) != 64 or not p.is_dir():
                    continue
                digest = "sha256:" + p.name
                if digest in held or source_mounted(p):
                    continue
                if self._remove(p):
                    removed.append(digest)
        if removed:
            log.info("removed %d unused layer(s)", len(removed))
        return removed

    def _remove_stale(self, new: Path) -> None:
        """A `.new-` directory whose commit is no longer running (its lock is free)."""
        lock = new.with_name(new.name + ".lock")
        try:
            f = open(lock, "r+")
        except FileNotFoundError:  # its commit finished meanwhile
            return
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a commit in progress
            if self._remove(new):
                lock.unlink(missing_ok=True)

    @staticmethod
    def _remove(path: Path) -> bool:
        try:
            remove_tree(path)
            return True
        except OSError as e:
            log.error("could not remove layer %s: %s", path.name, e)
            return False
