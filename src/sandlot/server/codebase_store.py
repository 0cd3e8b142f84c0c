"""Codebases: named file trees stored once on the host, which sandboxes mount (each with its own
copy-on-write layer and path permissions, runtimes/workspace.py).

    <home>/codebases/<id>/meta.json    {id, name, team, created_at, version, files, size}
    <home>/codebases/<id>/v<N>/        version N of the tree (owned by host root)

A sandbox mounts the version that is current when it starts, as the lower layer of its overlay, so a
version in use is never changed: a change to one (an upload, a sandbox's commit) makes the next
version, a copy sharing every unchanged file through hard links, and becomes current once whole.
Versions no overlay uses any more are removed. Uploads are a file or a tar stream, extracted with
tarfile's "data" filter (no absolute paths, no `..`, no device files, no links leaving the tree,
no setuid bits). A codebase belongs to a team (teams.py): `team_of` answers the routes' team
check (auth.py), `list` gives one team's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .. import _exceptions as E
from ..hostfs import remove_tree
from . import codebase_trees as trees
from .teams import DEFAULT_TEAM

_ID = re.compile(r"cb[0-9a-f]{16}\Z")
MAX_NAME = 128


def _now() -> float:
    return time.time()


class CodebaseStore:
    def __init__(self, root: Path, max_upload_bytes: int = 1 << 30):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.max_upload_bytes = max_upload_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, cid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(cid, threading.Lock())

    # ---- codebases ---------------------------------------------------------------------------

    def create(self, name: str, team: str = DEFAULT_TEAM) -> dict:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or "\0" in name:
            raise E.InvalidArgument(f"a codebase name is 1 to {MAX_NAME} characters")
        cid = "cb" + secrets.token_hex(8)
        d = self.root / cid
        d.mkdir(mode=0o700)
        (d / "v1").mkdir(mode=0o755)
        meta = {"id": cid, "name": name, "team": team, "created_at": _now(), "version": 1, "files": 0, "size": 0}
        self._save(meta)
        return meta

    def list(self, team: str) -> list[dict]:
        """The team's codebases, oldest first."""
        found = []
        for d in sorted(self.root.iterdir()):
            if _ID.match(d.name):
                try:
                    meta = self._meta(d.name)
                except E.NotFound:
                    continue  # being deleted
                if meta["team"] == team:
                    found.append(meta)
        return sorted(found, key=lambda m: m["created_at"])

    def get(self, cid: str, team: str | None = None) -> dict:
        """The codebase's metadata; with `team`, NotFound (as for an unknown id) unless it is that
        team's."""
        meta = self._meta(cid)
        if team is not None and meta["team"] != team:
            raise E.NotFound(_not_found(cid))
        return meta

    def team_of(self, cid: str) -> str | None:
        """The team owning a codebase; None if there is none of that id (auth.py's team check)."""
        try:
            return self._meta(cid)["team"]
        except E.NotFound:
            return None

    def tree(self, cid: str) -> Path:
        """The current version's tree: what a sandbox created now mounts."""
        return self._dir(cid) / f"v{self._meta(cid)['version']}"

    def delete(self, cid: str) -> None:
        with self._lock(cid):
            self._meta(cid)
            users = sorted(self._in_use(cid))
            if users:
                raise E.AlreadyExists(f"codebase {cid} is mounted by running sandboxes (version "
                                      f"{', '.join(users)}): kill them first")
            d = self._dir(cid)
            (d / "meta.json").unlink()
            remove_tree(d)

    # ---- files -------------------------------------------------------------------------------

    def write_file(self, cid: str, path: str, data: BinaryIO, mode: int = 0o644) -> dict:
        """Write one file (parents made); a new version if the current one is in use."""
        rel = trees.relative(path)
        if not rel.parts:
            raise E.InvalidArgument("a file path inside the codebase is required")
        with self._lock(cid):
            tree, commit = self._writable(cid)
            try:
                target = trees.inside(tree, rel)
                trees.make_parents(tree, rel)
                if target.is_symlink() or target.is_dir():
                    raise E.InvalidArgument(f"/{rel} is a directory or a link in the codebase")
                tmp = target.with_name(f".upload-{secrets.token_hex(4)}")
                with open(tmp, "xb") as out:
                    trees.copy_limited(data, out, self.max_upload_bytes)
                os.chmod(tmp, mode & 0o777)
                os.replace(tmp, target)
            except BaseException:
                commit(False)
                raise
            return commit(True)

    def extract_tar(self, cid: str, stream: BinaryIO, into: str = "/") -> dict:
        """Unpack a tar (gzip allowed) below ``into``; a new version if the current one is in use."""
        base = trees.relative(into)
        with self._lock(cid):
            tree, commit = self._writable(cid)
            staging = self._dir(cid) / f".staging-{secrets.token_hex(4)}"
            try:
                dest = trees.inside(tree, base, directory=True)
                if base.parts:
                    trees.make_parents(tree, base / "x")
                dest.mkdir(exist_ok=True)
                staging.mkdir(mode=0o700)
                counted = trees.Counted(stream, self.max_upload_bytes)
                try:
                    # unpacked aside first: a refused member leaves the tree as it was
                    with tarfile.open(fileobj=counted, mode="r|*") as tar:
                        for member in tar:
                            tar.extract(member, staging, filter="data")
                except (tarfile.TarError, EOFError, OSError) as e:
                    if isinstance(e, OSError) and e.errno is None:
                        raise E.InvalidArgument(f"not a tar archive: {e}") from None
                    if isinstance(e, tarfile.FilterError):
                        raise E.InvalidArgument(f"refused tar member: {e}") from None
                    if isinstance(e, (tarfile.TarError, EOFError)):
                        raise E.InvalidArgument(f"not a valid tar archive: {e}") from None
                    raise
                trees.merge(staging, dest)
            except BaseException:
                commit(False)
                raise
            finally:
                if staging.exists():
                    remove_tree(staging)
            return commit(True)

    def read_file(self, cid: str, path: str) -> Path:
        """The host path of a file of the current version (for streaming it out)."""
        rel = trees.relative(path)
        target = trees.inside(self.tree(cid), rel)
        if target.is_symlink() or not target.is_file():
            raise E.FileNotFound(f"/{rel} is not a file of codebase {cid}")
        return target

    def list_files(self, cid: str, path: str = "/") -> list[dict]:
        rel = trees.relative(path)
        tree = self.tree(cid)
        top = trees.inside(tree, rel)
        if top.is_symlink() or not top.is_dir():
            raise E.FileNotFound(f"/{rel} is not a directory of codebase {cid}")
        found = []
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                full = Path(dirpath) / name
                st = full.lstat()
                kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
                found.append({"path": "/" + str(full.relative_to(tree)), "type": kind, "size": st.st_size,
                              "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime})
        return sorted(found, key=lambda e: e["path"])

    def tar(self, cid: str, path: str = "/") -> Iterator[bytes]:
        """The current version (or one directory of it) as an uncompressed tar stream."""
        rel = trees.relative(path)
        top = trees.inside(self.tree(cid), rel, directory=True)
        if not top.is_dir():
            raise E.FileNotFound(f"/{rel} is not a directory of codebase {cid}")
        return trees.tar_stream(top)

    # ---- versions ----------------------------------------------------------------------------

    def apply_layer(self, cid: str, upper: Path) -> dict:
        """Commit a sandbox's overlay layer: its new and changed files, its deletions (whiteouts)
        and replaced directories (opaque ones), as the codebase's next version."""
        with self._lock(cid):
            meta = self._meta(cid)
            d = self._dir(cid)
            new = d / f"v{meta['version'] + 1}.building"
            if new.exists():
                remove_tree(new)
            trees.link_copy(d / f"v{meta['version']}", new)
            trees.apply_layer(upper, new)
            return self._switch(meta, new)

    def collect(self, cid: str) -> None:
        """Remove the versions no sandbox mounts any more (after a sandbox moved off one)."""
        with self._lock(cid):
            self._collect(self._meta(cid))

    def _writable(self, cid: str):
        """(tree to write, commit(ok) -> meta): in place if no sandbox uses the current version,
        else a copy that becomes the next version."""
        meta = self._meta(cid)
        d = self._dir(cid)
        current = d / f"v{meta['version']}"
        if f"v{meta['version']}" not in self._in_use(cid):
            def commit_in_place(ok: bool) -> dict:
                return self._recount(meta, current)
            return current, commit_in_place
        new = d / f"v{meta['version'] + 1}.building"
        if new.exists():
            remove_tree(new)
        trees.link_copy(current, new)

        def commit_copy(ok: bool) -> dict:
            if not ok:
                remove_tree(new)
                return meta
            return self._switch(meta, new)
        return new, commit_copy

    def _switch(self, meta: dict, building: Path) -> dict:
        final = building.with_name(f"v{meta['version'] + 1}")
        building.rename(final)
        meta["version"] += 1
        meta = self._recount(meta, final)
        self._collect(meta)
        return meta

    def _recount(self, meta: dict, tree: Path) -> dict:
        files = size = 0
        for dirpath, _, names in os.walk(tree):
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                files += 1
                size += st.st_size
        meta.update(files=files, size=size)
        self._save(meta)
        return meta

    def _collect(self, meta: dict) -> None:
        """Remove the versions no overlay mounts any more (the current one stays)."""
        d = self._dir(meta["id"])
        used = self._in_use(meta["id"]) | {f"v{meta['version']}"}
        for v in d.iterdir():
            if v.name.startswith("v") and v.name not in used and not v.name.endswith(".building"):
                remove_tree(v)

    def _in_use(self, cid: str) -> set[str]:
        """Versions of the codebase that an overlay on this host has as its lower layer."""
        prefix = str(self._dir(cid)) + "/"
        found = set()
        with open("/proc/self/mountinfo") as f:
            for line in f:
                _, _, tail = line.partition(" - ")
                fields = tail.split()
                if len(fields) < 3 or fields[0] != "overlay":
                    continue
                for option in fields[2].split(","):
                    if option.startswith("lowerdir="):
                        for lower in option[len("lowerdir="):].split(":"):
                            lower = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), lower)
                            if lower.startswith(prefix):
                                found.add(lower[len(prefix):].split("/")[0])
        return found

    # ---- metadata ----------------------------------------------------------------------------

    def _dir(self, cid: str) -> Path:
        if not isinstance(cid, str) or not _ID.match(cid):
            raise E.NotFound(_not_found(cid))
        return self.root / cid

    def _meta(self, cid: str) -> dict:
        try:
            meta = json.loads((self._dir(cid) / "meta.json").read_text())
        except (OSError, ValueError):
            raise E.NotFound(_not_found(cid)) from None
        meta["team"] = meta.get("team") or DEFAULT_TEAM  # made before teams: the default team's
        return meta

    def _save(self, meta: dict) -> None:
        path = self._dir(meta["id"]) / "meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(path)


def _not_found(cid: object) -> str:
    # the words auth.py answers another team's codebase with: the two cannot be told apart
    return f'codebase "{cid}" not found'
