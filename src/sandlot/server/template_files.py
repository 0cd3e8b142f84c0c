"""Uploaded template build files (`PUT /templates/{id}/files/{hash}/upload`: a COPY's tarball, an
image archive), kept per team in <home>/template-files/<team digest>/<hash> (custom_templates.py):
how much a team may keep, and when they go. Each used to be kept forever, any number of them.

    bound     a team keeps at most SANDLOT_TEMPLATE_FILES_MAX_BYTES of them (each file counted in
              whole 4 KiB blocks, at least one), and they count toward its max_disk_mb with its
              sandboxes and volumes (quotas.py). An upload that would pass either is refused (429)
              as it arrives (at once when its Content-Length says so), its partial file removed.
    deletion  deleting a template removes the files its builds named or it asked for, unless a build
              of another of the team's templates names them or another template asked for them
              within SANDLOT_TEMPLATE_FILES_TTL (its build may be about to start).
    sweep     a file no build names goes SANDLOT_TEMPLATE_FILES_TTL after its upload or the last
              time a template asked for it (the reaper's chore, every SWEEP_S at most).

The hash is the client's name for the files (E2B's `filesHash`), not checked against them: the
SDKs hash "COPY <src> <dest>" (known only when the build starts) and each file's relative path,
st_mode, size and content or link target, which the uploaded tar does not all carry (the JS SDK
and older Python ones hash a directory's st_size, which depends on the client's filesystem;
file type bits, hard links stored as links), and the SDKs and their releases differ in what they
hash. E2B's own API does not check it either. A wrong hash can mislead only its own team's builds
and step cache: the files, the link's `present` and the cache keys are all per team.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from .custom_templates import CustomTemplate, CustomTemplates
from .quotas import Holding, Quotas, refusal

BLOCK = 4096  # what a file takes on disk at least (and an inode): a million empty uploads are 4 GiB
SWEEP_S = 60.0  # the sweep's period at most (a quarter of the TTL if that is shorter)
QUOTA_RECHECK = 8 << 20  # bytes of an upload between two looks at max_disk_mb (a walk of the holdings)
_HASH = re.compile(r"^[0-9a-f]{64}$")


def blocks(size: int) -> int:
    return max(1, math.ceil(size / BLOCK)) * BLOCK


class TemplateFiles:
    def __init__(self, store: CustomTemplates, quotas: Quotas, max_bytes: int, ttl_s: float):
        self.store, self.quotas, self.max_bytes, self.ttl_s = store, quotas, max_bytes, ttl_s
        self.root = store.files_root
        self.sweep_s = min(SWEEP_S, ttl_s / 4)
        self._teams = {self._digest(t.id): t.id for t in quotas.teams.list()}  # digest -> team
        self._kept: Counter[str] = Counter()  # digest -> bytes its files take (in blocks)
        self._arriving: Counter[str] = Counter()  # digest -> bytes of its uploads under way
        self._partials: set[Path] = set()  # the files uploads under way write
        self._asked: dict[tuple[str, str], dict[str, float]] = {}  # (digest, hash) -> template -> when
        self._scan()

    def _digest(self, team: str) -> str:
        return self.store.files_folder(team).name

    def _scan(self) -> None:
        """At start: what each team keeps; partial files are a stopped server's (none is under way)."""
        if not self.root.is_dir():
            return
        for folder in filter(Path.is_dir, self.root.iterdir()):
            for entry in os.scandir(folder):
                if entry.name.startswith("."):
                    os.unlink(entry.path)
                else:
                    self._kept[folder.name] += blocks(entry.stat().st_size)

    def holdings(self) -> list[Holding]:
        """What each team's files take, for max_disk_mb (service._holdings)."""
        found = []
        for digest, team in self._teams.items():
            mb = math.ceil((self._kept[digest] + self._arriving[digest]) / (1 << 20))
            if mb:
                found.append(Holding(self._holder(team), team, 0, mb, running=False, disk_written_mb=lambda mb=mb: mb))
        return found

    @staticmethod
    def _holder(team: str) -> str:
        return f"template-files:{team}"

    # ---- the routes ----------------------------------------------------------------------------

    def asked(self, tpl: CustomTemplate, files_hash: str) -> bool:
        """A template asks for an upload link: whether the files are there already (then they count
        as new again for the sweep)."""
        path = self.store.files_path(tpl.team, files_hash)
        digest = path.parent.name
        self._teams[digest] = tpl.team
        self._asked.setdefault((digest, files_hash), {})[tpl.id] = time.time()
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    async def receive(self, team: str, files_hash: str, body: AsyncIterator[bytes], declared: int | None) -> None:
        """Store an upload's body as the team's files of that hash, within the team's bounds (else
        ResourceExhausted, and nothing of it is kept)."""
        path = self.store.files_path(team, files_hash)
        digest = path.parent.name
        self._teams[digest] = team
        quota = self.quotas.disk_left_mb(team, self._holder(team))
        self._admit(team, digest, declared or 0, quota)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{files_hash}.{secrets.token_hex(4)}")
        self._partials.add(partial)
        received, checked = 0, 0
        try:
            with open(partial, "xb") as f:  # bounded by the route's body limit (SANDLOT_MAX_UPLOAD_BYTES)
                async for chunk in body:
                    received += len(chunk)
                    self._arriving[digest] += len(chunk)
                    if received - checked >= QUOTA_RECHECK:
                        quota, checked = self.quotas.disk_left_mb(team, self._holder(team)), received
                    self._admit(team, digest, 0, quota)
                    await asyncio.to_thread(f.write, chunk)
            replaced = path.stat().st_size if path.exists() else None
            os.replace(partial, path)
            self._kept[digest] += blocks(received) - (blocks(replaced) if replaced is not None else 0)
        finally:
            self._arriving[digest] -= received
            self._partials.discard(partial)
            partial.unlink(missing_ok=True)

    def _admit(self, team: str, digest: str, more: int, quota: tuple[int, int] | None) -> None:
        """Refuse if the team's files, with its uploads under way and `more`, pass a bound."""
        total = self._kept[digest] + self._arriving[digest] + more
        if total > self.max_bytes:
            raise refusal(f"the uploaded build files of team \"{self._name(team)}\" would pass {self.max_bytes} "
                          f"bytes (SANDLOT_TEMPLATE_FILES_MAX_BYTES): {total} with this upload. Files no build "
                          f"names go {self.ttl_s:g} s after their upload; a template's go when it is deleted")
        if quota is not None and total > (quota[0] - quota[1]) << 20:
            raise refusal(f"team \"{self._name(team)}\" would pass its quota of {quota[0]} MiB (max_disk_mb): "
                          f"its sandboxes and volumes hold {quota[1]} MiB, its uploaded build files would "
                          f"take {total} bytes with this upload")

    def _name(self, team: str) -> str:
        return self.quotas.teams.get(team).name

    # ---- removal -------------------------------------------------------------------------------

    def forget(self, tpl: CustomTemplate, named: set[str]) -> None:
        """A template was deleted: remove the files its builds `named` or it asked for that no
        other build of its team names and no other template asked for lately."""
        digest = self._digest(tpl.team)
        mine = {h for h in named if _HASH.match(h)}
        for (d, files_hash), who in self._asked.items():
            if d == digest and who.pop(tpl.id, None) is not None:
                mine.add(files_hash)
        still = {h for _, h in self.store.uploads_named(team=tpl.team)}
        now = time.time()
        for files_hash in mine - still:
            if not any(now - at < self.ttl_s for at in self._asked.get((digest, files_hash), {}).values()):
                self._asked.pop((digest, files_hash), None)
                self._remove(self.store.files_path(tpl.team, files_hash))

    def _remove(self, path: Path, older_than: float | None = None) -> None:
        """On the event loop's thread, as every upload's last step is: nothing comes between."""
        try:
            st = path.stat()
            if older_than is not None and st.st_mtime >= older_than:
                return
            path.unlink()
        except FileNotFoundError:
            return
        self._kept[path.parent.name] -= blocks(st.st_size)

    async def sweep(self) -> None:
        """Remove the files no build names whose upload (or last link) is older than the TTL."""
        cutoff = time.time() - self.ttl_s
        self._asked = {k: who for k, who in self._asked.items()
                       if any(at > cutoff for at in who.values())}
        old = await asyncio.to_thread(self._old_files, cutoff)
        named = {(self._digest(team), h) for team, h in self.store.uploads_named()}
        for path in old:
            if (path.parent.name, path.name) not in named:  # named now, or asked for since: kept
                self._remove(path, older_than=cutoff)

    def _old_files(self, cutoff: float) -> list[Path]:
        """(In a thread) the files older than `cutoff`; the loop removes some meanwhile."""
        found = []
        for folder in (os.scandir(self.root) if self.root.is_dir() else ()):
            for entry in os.scandir(folder.path) if folder.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    if not entry.name.startswith(".") and entry.stat().st_mtime < cutoff:
                        found.append(Path(entry.path))
        return found
