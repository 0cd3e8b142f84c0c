"""Rates a sandbox cannot exceed at the control plane's expense.

Relaying a command's output costs the server CPU outside the sandbox's cgroup (800 MiB of output
took ~85 % of a host core): each sandbox's relayed bytes go through a token bucket, and a stream
over it waits, which backs up into the agent's pipes and blocks the writing process inside the
sandbox. The sandbox slows down; its neighbours do not.
"""

from __future__ import annotations

import asyncio
import time


class ByteRate:
    """A token bucket of `rate` bytes per second with a burst of `burst` bytes, shared by all of a
    sandbox's streams."""

    def __init__(self, rate: int, burst: int | None = None):
        self.rate = rate
        self.burst = burst if burst is not None else rate // 4
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        """Account `n` bytes, waiting as long as the bucket is in debt."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - n
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)
