"""The reaper: running sandboxes end at their deadline (killed, or paused when they asked for
auto-pause) or when their processes end by themselves.

A running sandbox that ends by itself is seen through a pidfd of its outermost process, readable
once it exits: the loop then only compares deadlines. Asking /proc about every sandbox five times a
second cost the event loop ~15-40 us each (at 2000 sandboxes, a fifth of a core or more, all of
them idle). Where no pidfd can be had (fds exhausted, no such pid), the reaper asks the runtime.

Its loop also runs the server's sweeps (`every`: uploaded template files past their TTL), so that
they need no loop of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from .. import _exceptions as E
from ..runtimes.interface import Runtime
from .live import LiveSandbox, Sandboxes

log = logging.getLogger("sandlot.service")

REAP_INTERVAL = 0.2


class Reaper:
    def __init__(self, sandboxes: Sandboxes, runtime: Runtime, kill: Callable[..., Awaitable[None]],
                 pause: Callable[[str, str], Awaitable[None]]):
        """`kill(sandbox_id, reason=...)` and `pause(sandbox_id, mode)`: the service's own."""
        self.sandboxes, self.runtime, self.kill, self.pause = sandboxes, runtime, kill, pause
        self._exit_fds: dict[str, int] = {}  # running sandbox -> pidfd of its outermost process
        self._exited: set[str] = set()  # running sandboxes whose process ended (the reaper ends them)
        self._polled: set[str] = set()  # running sandboxes with no pidfd: the reaper asks the runtime
        self._chores: list[list] = []  # [period s, next run (monotonic), chore, its task]

    def every(self, period_s: float, chore: Callable[[], Awaitable[None]]) -> None:
        """Also run `chore` every `period_s` s (in a task of its own: the reaper does not wait for it)."""
        self._chores.append([period_s, time.monotonic() + period_s, chore, None])

    def close(self) -> None:
        for sid in list(self._exit_fds):
            self.unwatch(sid)
        for chore in self._chores:
            if chore[3] is not None:
                chore[3].cancel()


    def watch(self, live: LiveSandbox) -> None:
        sid = live.id
        try:
            fd = os.pidfd_open(live.rt.pid)
        except ProcessLookupError:
            self._exited.add(sid)
            return
        except OSError:
            self._polled.add(sid)
            return
        if not self.runtime.alive(live.rt):  # gone, or the pid is another process's now
            os.close(fd)
            self._exited.add(sid)
            return
        self._exit_fds[sid] = fd
        asyncio.get_running_loop().add_reader(fd, self._on_exit, sid)

    def _on_exit(self, sandbox_id: str) -> None:
        self.unwatch(sandbox_id)
        self._exited.add(sandbox_id)

    def unwatch(self, sandbox_id: str) -> None:
        self._exited.discard(sandbox_id)
        self._polled.discard(sandbox_id)
        fd = self._exit_fds.pop(sandbox_id, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _ended(self, live: LiveSandbox) -> bool:
        if live.id in self._polled:
            return not self.runtime.alive(live.rt)
        return live.id in self._exited

    async def run(self) -> None:
        """End sandboxes past their deadline or whose processes ended (the server's task)."""
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            now = time.time()
            # paused sandboxes keep until killed or resumed; many due at once end together, so
            # the last of them is not late by the sum of the others' kills
            due = [live for live in list(self.sandboxes.live.values())
                   if live.record.end_at <= now or self._ended(live)]
            await asyncio.gather(*(self._reap(live, now) for live in due))
            for chore in self._chores:
                if time.monotonic() >= chore[1] and (chore[3] is None or chore[3].done()):
                    chore[1] = time.monotonic() + chore[0]
                    chore[3] = asyncio.create_task(self._chore(chore[2]), name="sandlot-chore")

    @staticmethod
    async def _chore(chore: Callable[[], Awaitable[None]]) -> None:
        try:
            await chore()
        except Exception:
            log.exception("the reaper's chore %s failed", getattr(chore, "__qualname__", chore))

    async def _reap(self, live: LiveSandbox, now: float) -> None:
        try:
            if live.record.end_at > now:
                await self.kill(live.id, reason="sandbox exited")
            elif live.record.auto_pause:
                # a workspace lives outside the sandbox's layers: only a full pause keeps it (lifecycle.py)
                await self.pause(live.id, "full" if live.record.workspace else live.record.auto_pause_mode)
            else:
                await self.kill(live.id, reason="timeout")
        except (E.NotFound, E.AlreadyExists):  # killed or paused by a request meanwhile
            pass
        except Exception:
            log.exception("reaper failed on sandbox %s", live.id)
