"""Host uid ranges for sandboxes: one per sandbox, never shared, even between servers on one host.

Slot N is host uids UID_FIRST + N * UID_RANGE onwards, mapped onto 0..65535 inside the sandbox. A
slot is held by a claim file /run/sandlot/uids/N ("<server> <sandbox id>"), made with O_EXCL, so two
servers (two state dirs) never hand out the same range. A claim costs O(1) however many sandboxes
run (reading every claim took 77 ms at 2000 sandboxes, per create and per kill; trying each slot
from the lowest freed one up took ~6 ms when a kill freed one below 2000 taken): it tries the slots
this server freed, lowest first, then those it never held, and every slot only when those are
taken (another server's). It reads claims only when every slot is taken, to take over stale ones:
a claim whose server directory (/run/sandlot/<server>) is gone; /run empties at boot.
Taking a slot over, adoption and listing hold a host-wide lock.
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import os
from contextlib import contextmanager
from pathlib import Path

from .. import _exceptions as E

UID_FIRST = 1_000_000  # host uids from here on belong to sandboxes, 65536 per sandbox
UID_RANGE = 65536
MAX_SLOTS = 4096
CLAIMS = Path("/run/sandlot/uids")


def uid_base(slot: int) -> int:
    return UID_FIRST + slot * UID_RANGE


class UidRanges:
    """The claims of one server, named by its directory under /run/sandlot."""

    def __init__(self, server_dir: Path, claims: Path = CLAIMS, slots: int = MAX_SLOTS):
        self.server_dir = server_dir
        self.owner = server_dir.name
        self.claims = claims
        self.slots = slots
        self._freed: list[int] = []  # a heap of the slots this server released: tried first
        self._fresh = 0  # slots from here on were never held by this server: tried next
        claims.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextmanager
    def _locked(self):
        fd = os.open(self.claims / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[int, tuple[str, str]]:
        found = {}
        for entry in os.scandir(self.claims):
            if entry.name.isdigit():
                try:
                    owner, sid = Path(entry.path).read_text().split()
                except (OSError, ValueError):
                    owner, sid = "", ""  # half-written: only under the lock, by a crashed claimer
                found[int(entry.name)] = (owner, sid)
        return found

    def _write(self, slot: int, sandbox_id: str) -> None:
        path = self.claims / str(slot)
        tmp = self.claims / f".{slot}.tmp"
        tmp.write_text(f"{self.owner} {sandbox_id}\n")
        os.replace(tmp, path)

    def _stale(self, owner: str) -> bool:
        return owner != self.owner and not (self.server_dir.parent / owner).is_dir()

    def claim(self, sandbox_id: str) -> int:
        """A free slot, now held for `sandbox_id`."""
        while self._freed:
            slot = heapq.heappop(self._freed)
            if self._take(slot, sandbox_id):
                return slot
        for slot in itertools.chain(range(self._fresh, self.slots), range(self._fresh)):  # all, once
            if self._take(slot, sandbox_id):
                self._fresh = max(self._fresh, slot + 1)
                return slot
        with self._locked():  # every slot taken: those of servers that are gone may be had
            for slot, (owner, _) in sorted(self._read().items()):
                if slot < self.slots and self._stale(owner):
                    self._write(slot, sandbox_id)
                    return slot
        raise E.ResourceExhausted(f"all {self.slots} sandbox uid ranges on this host are in use")

    def _take(self, slot: int, sandbox_id: str) -> bool:
        try:
            fd = os.open(self.claims / str(slot), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:  # read half-written, a claim is taken (never stale): safe
            f.write(f"{self.owner} {sandbox_id}\n")
        return True

    def _freed_now(self, slot: int) -> None:
        heapq.heappush(self._freed, slot)  # twice is harmless: the second try finds it taken

    def reclaim(self, slot: int, sandbox_id: str) -> bool:
        """Hold `slot` for an adopted sandbox again; False if another server's sandbox holds it."""
        with self._locked():
            owner, sid = self._read().get(slot, (self.owner, sandbox_id))
            if (owner, sid) != (self.owner, sandbox_id) and not self._stale(owner):
                return False
            self._write(slot, sandbox_id)
            return True

    def release(self, sandbox_id: str, slot: int | None = None) -> None:
        """Free the slot `sandbox_id` holds: `slot` if known (O(1)), else found among the claims."""
        if slot is not None:
            path = self.claims / str(slot)
            try:
                if path.read_text().split() == [self.owner, sandbox_id]:
                    path.unlink(missing_ok=True)
                    self._freed_now(slot)
                    return
            except (OSError, ValueError):
                pass
        with self._locked():
            for found, claim in self._read().items():
                if claim == (self.owner, sandbox_id):
                    (self.claims / str(found)).unlink(missing_ok=True)
                    self._freed_now(found)

    def mine(self) -> dict[int, str]:
        """This server's claims: slot -> sandbox id."""
        with self._locked():
            return {slot: sid for slot, (owner, sid) in self._read().items() if owner == self.owner}
