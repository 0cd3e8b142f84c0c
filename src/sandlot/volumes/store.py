"""Persistent named volumes: one ext4 image per volume, its size the volume's hard quota.

    <home>/volumes/<id>/disk.img   a sparse file (costs only what is written), formatted ext4
    <home>/volumes/<id>/mnt/       where the image is mounted (loop, nodev, nosuid) while in use
    the server's SQLite: table volumes (id, team, name, size_mb, token, created_at)

Why an image per volume (docs/volumes.md has the numbers): a full file system of its own is a hard
quota the kernel enforces (ENOSPC at the size, as on a disk), on any host file system, without
project quotas; mkfs of a sparse 1 GiB image takes ~60 ms and mounting it ~70 ms. Files on it are
stored in the template uid space (the default user is 1000): each sandbox reaches the volume
through an id-mapped bind (volumes/mount.py), so sandboxes with different host uid ranges share it.

A volume is mounted once on the host and stays so while the server runs (sandboxes kept across a
restart keep theirs; a second mount of the image through another loop device would corrupt it, so
an existing mount is always reused); `close()` at a clean stop unmounts the ones no sandbox uses.

A volume belongs to a team (server/teams.py): its name is unique within the team, and lookups by
name are a team's; an id names one volume on the server.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import string
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import _exceptions as E
from ..shared_db import SharedDb
from ..hostfs import allocated, mounts, remove_tree

log = logging.getLogger("sandlot.volumes")

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    name TEXT NOT NULL,
    size_mb INTEGER NOT NULL,
    token TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (team, name)
);
"""
DEFAULT_SIZE_MB = 1024
MAX_SIZE_MB = 1024 * 1024
USER_UID = 1000  # the templates' default user owns a new volume's root
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Volume:
    id: str
    team: str
    name: str
    size_mb: int
    token: str
    created_at: float


class VolumeStore:
    def __init__(self, home: Path, db_path: Path):
        self.root = Path(home) / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)  # sandboxes' bwrap passes through to the id-mapped binds only
        self._db = SharedDb(db_path, SCHEMA)
        self._sql = self._db.sql
        self._lock = threading.Lock()  # mounts, one at a time

    def close(self, in_use: set[tuple[str, str]] = frozenset()) -> None:
        """At a clean stop: unmount the volumes no remaining sandbox uses ((team, name) pairs)."""
        for vol in self.list():
            if (vol.team, vol.name) not in in_use:
                self._unmount(vol)
        self._db.close()

    # ---- records -----------------------------------------------------------------------------

    def _rows(self, where: str = "", args: tuple = ()) -> list[Volume]:
        return [Volume(*r) for r in self._sql(f"SELECT id, team, name, size_mb, token, created_at FROM volumes "
                                              f"{where} ORDER BY created_at, id", args)]

    def list(self, team: str | None = None) -> list[Volume]:
        """The volumes of `team` (None: all)."""
        return self._rows("WHERE team=?", (team,)) if team is not None else self._rows()

    def find(self, ref: str, team: str) -> Volume | None:
        """A volume of `team`, by id or by name."""
        rows = self._rows("WHERE team=? AND (id=? OR name=?)", (team, ref, ref))
        return rows[0] if rows else None

    def get(self, ref: str, team: str) -> Volume:
        vol = self.find(ref, team)
        if vol is None:
            raise E.NotFound(f"volume \"{ref}\" not found")
        return vol

    def by_id(self, volume_id: str) -> Volume | None:
        """Any team's volume by its id (the content API, whose token is the credential)."""
        rows = self._rows("WHERE id=?", (volume_id,))
        return rows[0] if rows else None

    def team_of(self, ref: str) -> str | None:
        """The team owning the volume whose id `ref` is (the routes' team check, auth.py); None for
        anything else: names are resolved within the caller's team by the handlers."""
        vol = self.by_id(ref)
        return vol.team if vol else None

    # ---- create and delete -------------------------------------------------------------------

    def create(self, name: str, team: str, size_mb: int = DEFAULT_SIZE_MB) -> Volume:
        if os.geteuid() != 0:
            raise E.Unsupported("volumes need a server run as root (an image is mounted per volume)")
        if not isinstance(name, str) or not _NAME.match(name):
            raise E.InvalidArgument("a volume name is 1-63 letters, digits, '_', '.' or '-', starting with "
                                    "a letter or digit")
        if not 16 <= size_mb <= MAX_SIZE_MB:
            raise E.InvalidArgument(f"a volume's size is 16 to {MAX_SIZE_MB} MB")
        if self.find(name, team):
            raise E.AlreadyExists(f"a volume named \"{name}\" exists")
        vol = Volume("vol" + "".join(secrets.choice(_ALPHABET) for _ in range(16)), team, name, size_mb,
                     secrets.token_urlsafe(24), time.time())
        d = self.root / vol.id
        d.mkdir(mode=0o711)
        try:
            image = d / "disk.img"
            with open(image, "wb") as f:
                f.truncate(size_mb << 20)
            os.chmod(image, 0o600)
            # no journal: a volume is one sandbox tenant's scratch space, and it saves ~4% and a thread
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                  "-E", f"root_owner={USER_UID}:{USER_UID}", str(image)])
            (d / "mnt").mkdir(mode=0o700)
            self._mount(vol)
            remove_tree(self.mountpoint(vol) / "lost+found")  # an empty volume looks empty
            try:
                self._sql("INSERT INTO volumes VALUES (?,?,?,?,?,?)", (vol.id, vol.team, vol.name, vol.size_mb,
                                                                         vol.token, vol.created_at))
            except sqlite3.IntegrityError:  # made meanwhile by a concurrent request
                raise E.AlreadyExists(f"a volume named \"{name}\" exists") from None
        except BaseException:
            self._unmount(vol)
            remove_tree(d)
            raise
        return vol

    def written_mb(self, vol: Volume) -> int:
        """MiB its image holds on the host's disk (host admission, server/quotas.py)."""
        return allocated(self.root / vol.id / "disk.img") >> 20

    def delete(self, vol: Volume) -> None:
        """The caller checked that no sandbox mounts it."""
        self._sql("DELETE FROM volumes WHERE id=?", (vol.id,))
        self._unmount(vol)
        remove_tree(self.root / vol.id)

    # ---- mounting on the host ----------------------------------------------------------------

    def mountpoint(self, vol: Volume) -> Path:
        return self.root / vol.id / "mnt"

    def mounted(self, vol: Volume) -> Path:
        """The volume's file system, mounted on the host (at most once)."""
        with self._lock:
            if not self._is_mounted(vol):
                self._mount(vol)
        return self.mountpoint(vol)

    def _is_mounted(self, vol: Volume) -> bool:
        point = str(self.mountpoint(vol))
        return any(m.point == point for m in mounts())

    def _mount(self, vol: Volume) -> None:
        _run(["mount", "-o", "loop,nodev,nosuid", str(self.root / vol.id / "disk.img"), str(self.mountpoint(vol))])

    def _unmount(self, vol: Volume) -> None:
        if self._is_mounted(vol):  # the loop device goes with it (mount -o loop sets autoclear)
            subprocess.run(["umount", str(self.mountpoint(vol))], capture_output=True, check=False)

    def usage(self, vol: Volume) -> tuple[int, int]:
        """(bytes used, bytes total) of the mounted volume."""
        st = os.statvfs(self.mounted(vol))
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise E.RuntimeFailure(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")
