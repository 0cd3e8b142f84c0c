"""The slots template builds run in (template_builder.py): at most `size` at once on a server; the
others wait, their status `waiting`.

A freed slot goes to the waiting build of the team that holds the fewest slots, the first to wait
among equals. A team alone may use every slot, but once another team's build waits, each slot that
frees goes to it: with 2 slots, a team that queued two builds of 200 hour-long steps (each bounded
by SANDLOT_TEMPLATE_BUILD_TIMEOUT) kept every other team waiting while a plain queue served
it first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator


class BuildSlots:
    def __init__(self, size: int):
        self.size = size
        self.held: Counter[str] = Counter()  # team -> slots it holds
        self._waiting: list[tuple[str, asyncio.Future]] = []  # in the order they came

    @contextlib.asynccontextmanager
    async def slot(self, team: str) -> AsyncIterator[None]:
        """Hold a slot for `team` while the block runs (waiting for one first)."""
        await self._take(team)
        try:
            yield
        finally:
            self._give_back(team)

    async def _take(self, team: str) -> None:
        if self.held.total() < self.size and not self._waiters():
            self.held[team] += 1
            return
        waiter = (team, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif not waiter[1].cancelled():  # handed a slot as it was cancelled: the next one's
                self._give_back(team)
            raise

    def _waiters(self) -> list[tuple[str, asyncio.Future]]:
        # a waiter whose task was cancelled has its future cancelled at once, and leaves the list
        # only when the task runs again: skipped meanwhile
        return [w for w in self._waiting if not w[1].done()]

    def _give_back(self, team: str) -> None:
        self.held[team] -= 1
        if self.held[team] <= 0:
            del self.held[team]
        while (waiting := self._waiters()) and self.held.total() < self.size:
            waiter = min(waiting, key=lambda w: self.held[w[0]])  # the first of the fewest
            self._waiting.remove(waiter)
            self.held[waiter[0]] += 1
            waiter[1].set_result(None)
