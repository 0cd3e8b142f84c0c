"""Admission of a sandbox about to run (create, resume): its team's quotas, then the host's memory
and disk.

    team quotas   (teams.py, `sandlot teams quotas`) max_sandboxes: running at once; max_memory_mb
                  and max_disk_mb: the limits of the team's running and paused sandboxes, summed (a
                  paused sandbox is frozen in memory and keeps its files; one paused with its files
                  only holds no memory); max_disk_mb also counts the sizes of the team's volumes,
                  checked when one is made (`admit_volume`), and its uploaded template build files,
                  checked as they arrive (template_files.py, `disk_left_mb`)
    host memory   the memory limits of every running and paused sandbox, summed, stay within
                  (host RAM - SANDLOT_HOST_MEMORY_RESERVE_MB) * SANDLOT_MEMORY_OVERCOMMIT; at the
                  default ratio of 1 sandboxes that each stay within their own limit cannot, together,
                  run the host out of memory (the reserve is for the server, the page cache and the
                  warm pools, whose idle sandboxes are not counted until claimed). 0 turns it off.
    host disk     what the sandboxes' disks and the volumes may still write (each one's size less
                  what its image already holds on the host) stays within the free space of the
                  server's home less SANDLOT_HOST_DISK_RESERVE_MB, times SANDLOT_DISK_OVERCOMMIT.
                  Their images are sparse: without this, sandboxes that each stay on their own disk
                  could together fill the host's. 0 turns it off.

Either refusal is a 429 with `Should-Retry: false` (the e2b SDK raises RateLimitException and does
not retry) and a message that names the limit. Nothing is created before the check passes, and a
create being made holds its share (a reservation) until the sandbox is listed, so concurrent
creates cannot pass the same room twice. The checks run on the event loop's thread without an
await between check and reservation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import ResourceExhausted
from ..runtimes.policy import Limits
from .teams import Teams


@dataclass(frozen=True)
class Holding:
    """What one sandbox holds, as admission counts it."""

    sandbox_id: str | None  # None: a create not yet listed
    team: str
    memory_mb: int
    disk_mb: int
    running: bool
    # what its disk image already holds on the host's disk (MiB): read only when the room is tight
    disk_written_mb: Callable[[], int] = lambda: 0


def host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def refusal(message: str) -> ResourceExhausted:
    return ResourceExhausted(message, retry=False)  # app.py: Should-Retry: false


class Quotas:
    def __init__(self, teams: Teams, holdings: Callable[[], Iterable[Holding]], *, overcommit: float,
                 reserve_mb: int, host_mb: int | None = None, disk: Path | None = None,
                 disk_overcommit: float = 0, disk_reserve_mb: int = 0):
        self.teams, self.holdings = teams, holdings
        self.overcommit, self.reserve_mb = overcommit, reserve_mb
        self.host_mb = host_mb or host_memory_mb()
        self.disk, self.disk_overcommit, self.disk_reserve_mb = disk, disk_overcommit, disk_reserve_mb
        self._reserved: list[Holding] = []

    @property
    def host_capacity_mb(self) -> int | None:
        """Memory the sandboxes' limits may add up to; None: not checked."""
        if not self.overcommit:
            return None
        return int(max(0, self.host_mb - self.reserve_mb) * self.overcommit)

    @contextlib.contextmanager
    def admit(self, team: str, limits: Limits, sandbox_id: str | None = None) -> Iterator[None]:
        """Check that `team` may run a sandbox with `limits` (`sandbox_id`: a paused one resuming),
        and hold its share until the block ends (by then the service lists it)."""
        with self._held(Holding(sandbox_id, team, limits.memory_mb, limits.disk_mb, running=True)):
            yield

    @contextlib.contextmanager
    def admit_volume(self, team: str, size_mb: int) -> Iterator[None]:
        """Check that `team` may keep a volume of `size_mb` more (max_disk_mb), and hold that
        until the block ends (by then the volume is listed)."""
        with self._held(Holding(None, team, 0, size_mb, running=False)):
            yield

    def disk_left_mb(self, team: str, besides: str) -> tuple[int, int] | None:
        """(max_disk_mb, what `team`'s holdings but `besides` hold of it); None: no such quota.
        For uploads, which grow as they arrive (template_files.py: `besides` is their holding)."""
        allowed = self.teams.get(team).max_disk_mb
        if allowed is None:
            return None
        return allowed, sum(h.disk_mb for h in [*self.holdings(), *self._reserved]
                            if h.team == team and h.sandbox_id != besides)

    @contextlib.contextmanager
    def _held(self, claim: Holding) -> Iterator[None]:
        self.check(claim)
        self._reserved.append(claim)
        try:
            yield
        finally:
            self._reserved.remove(claim)

    def check(self, claim: Holding) -> None:
        holdings = [*self.holdings(), *self._reserved]
        others = [h for h in holdings if claim.sandbox_id is None or h.sandbox_id != claim.sandbox_id]
        team = self.teams.get(claim.team)
        mine = [h for h in others if h.team == claim.team]
        if claim.running and team.max_sandboxes is not None and sum(h.running for h in mine) + 1 > team.max_sandboxes:
            raise refusal(f"team \"{team.name}\" may run {team.max_sandboxes} sandbox(es) at once (max_sandboxes) "
                          f"and has {sum(h.running for h in mine)} running")
        for quota, attr in (("max_memory_mb", "memory_mb"), ("max_disk_mb", "disk_mb")):
            allowed = getattr(team, quota)
            held = sum(getattr(h, attr) for h in mine)
            if allowed is not None and held + getattr(claim, attr) > allowed:
                raise refusal(f"team \"{team.name}\" would pass its quota of {allowed} MiB ({quota}): its sandboxes "
                              f"{'and volumes (and uploaded build files) ' if attr == 'disk_mb' else ''}hold {held} MiB and this one asks {getattr(claim, attr)} MiB")
        capacity = self.host_capacity_mb
        committed = sum(h.memory_mb for h in others)
        if capacity is not None and claim.memory_mb and committed + claim.memory_mb > capacity:
            raise refusal(f"the host has no room for this sandbox: the memory limits of its sandboxes would total "
                          f"{committed + claim.memory_mb} MiB, past the {capacity} MiB they may have (host memory "
                          f"{self.host_mb} MiB, less SANDLOT_HOST_MEMORY_RESERVE_MB={self.reserve_mb}, times "
                          f"SANDLOT_MEMORY_OVERCOMMIT={self.overcommit:g})")
        if self.disk is not None and self.disk_overcommit and claim.disk_mb:
            st = os.statvfs(self.disk)
            free_mb = st.f_bavail * st.f_frsize >> 20
            room = int(max(0, free_mb - self.disk_reserve_mb) * self.disk_overcommit)
            may_write, written = sum(h.disk_mb for h in others), 0
            if may_write + claim.disk_mb > room:  # what the images hold already comes off: read them
                may_write = sum(max(0, h.disk_mb - h.disk_written_mb()) for h in others)
                # a paused sandbox resuming already holds what it wrote
                written = sum(h.disk_written_mb() for h in holdings
                              if claim.sandbox_id and h.sandbox_id == claim.sandbox_id)
            if may_write + claim.disk_mb - written > room:
                raise refusal(f"the host has no disk for this sandbox: its sandboxes and volumes may still write "
                              f"{may_write} MiB and this one {claim.disk_mb - written} MiB, past the {room} MiB they "
                              f"may have ({free_mb} MiB free, less SANDLOT_HOST_DISK_RESERVE_MB="
                              f"{self.disk_reserve_mb}, times SANDLOT_DISK_OVERCOMMIT={self.disk_overcommit:g})")
