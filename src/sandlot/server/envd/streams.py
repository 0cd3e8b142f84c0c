"""Server streams that end with their sandbox and their deadline, and keep idle connections alive.

connectrpc notices a vanished client only when it sends a message, and E2B's proxies drop silent
connections, so a stream that has been quiet for `Keepalive-Ping-Interval` seconds (the SDK sends
50) gets a keepalive message, as envd does. The interval is held within [MIN_KEEPALIVE_S,
MAX_KEEPALIVE_S]: a client asking for 1e-7 s made the server spin a core sending keepalives.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from .errors import as_connect_errors
from .routing import SandboxHandle

T = TypeVar("T")

KEEPALIVE_HEADER = "keepalive-ping-interval"
DEFAULT_KEEPALIVE_S = 50.0
MIN_KEEPALIVE_S = 1.0
MAX_KEEPALIVE_S = 3600.0


async def guarded(
    events: AsyncIterator[T], sandbox: SandboxHandle, ctx: RequestContext, keepalive: Callable[[], T]
) -> AsyncIterator[T]:
    """Yield `events` until they end, the sandbox closes (`unavailable`) or the deadline passes."""
    loop = asyncio.get_running_loop()
    timeout_ms = ctx.timeout_ms
    end = None if timeout_ms is None else loop.time() + timeout_ms / 1000
    idle = _keepalive_interval(ctx)
    closed = asyncio.ensure_future(sandbox.closed.wait())
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            wait = idle if end is None else min(idle, end - loop.time())
            await asyncio.wait((pending, closed), timeout=max(wait, 0), return_when=asyncio.FIRST_COMPLETED)
            if pending.done():
                step, pending = pending, None
                try:
                    with as_connect_errors():
                        item = step.result()
                except StopAsyncIteration:
                    return
                yield item
            elif closed.done():
                raise ConnectError(Code.UNAVAILABLE, f"sandbox {sandbox.id} stopped running")
            elif end is not None and loop.time() >= end:
                raise ConnectError(Code.DEADLINE_EXCEEDED, "the stream's deadline passed")
            else:
                yield keepalive()
    finally:
        closed.cancel()
        if pending is not None:  # let the step finish cancelling before closing its iterator
            pending.cancel()
            await asyncio.wait((pending,))
        if (aclose := getattr(events, "aclose", None)) is not None:
            await aclose()


def _keepalive_interval(ctx: RequestContext) -> float:
    try:
        seconds = float(ctx.request_headers.get(KEEPALIVE_HEADER, DEFAULT_KEEPALIVE_S))
    except ValueError:
        return DEFAULT_KEEPALIVE_S
    if not math.isfinite(seconds) or seconds <= 0:
        return DEFAULT_KEEPALIVE_S
    return min(max(seconds, MIN_KEEPALIVE_S), MAX_KEEPALIVE_S)
