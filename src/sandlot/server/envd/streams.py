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
from typing import TYPE_CHECKING

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from .errors import as_connect_errors
from .routing import SandboxHandle

if TYPE_CHECKING:
    from ..agent_client import AgentStream

KEEPALIVE_HEADER = "keepalive-ping-interval"
DEFAULT_KEEPALIVE_S = 50.0
MIN_KEEPALIVE_S = 1.0
MAX_KEEPALIVE_S = 3600.0


async def guarded(
    events: AgentStream, sandbox: SandboxHandle, ctx: RequestContext, keepalive: Callable[[], dict]
) -> AsyncIterator[dict]:
    """Yield `events` until they end, the sandbox closes (`unavailable`) or the deadline passes.

    `events` is an agent stream (server/agent_client.py AgentStream, or one that wraps it): its
    `read()` loses nothing when a timeout cancels it, so the next event is awaited here, in the
    request's task, under a timeout that the keepalive interval, the deadline or the sandbox's end
    brings forward."""
    loop = asyncio.get_running_loop()
    timeout_ms = ctx.timeout_ms
    end = None if timeout_ms is None else loop.time() + timeout_ms / 1000
    idle = _keepalive_interval(ctx)
    reading: asyncio.Timeout | None = None  # the timeout of the read under way
    closing = sandbox.closed  # taken now: a pause swaps in a new one

    def sandbox_closed() -> None:
        if reading is not None and not reading.expired():
            reading.reschedule(loop.time())

    closing.subscribe(sandbox_closed)
    try:
        while not closing.is_set():
            wait = idle if end is None else min(idle, end - loop.time())
            try:
                async with asyncio.timeout(max(wait, 0)) as reading:
                    try:
                        with as_connect_errors():
                            item = await events.read()
                    finally:
                        reading = None
            except StopAsyncIteration:
                return
            except TimeoutError:
                if closing.is_set():
                    break
                if end is not None and loop.time() >= end:
                    raise ConnectError(Code.DEADLINE_EXCEEDED, "the stream's deadline passed") from None
                yield keepalive()
                continue
            yield item
        raise ConnectError(Code.UNAVAILABLE, f"sandbox {sandbox.id} stopped running")
    finally:
        closing.unsubscribe(sandbox_closed)
        await events.aclose()


def _keepalive_interval(ctx: RequestContext) -> float:
    try:
        seconds = float(ctx.request_headers.get(KEEPALIVE_HEADER, DEFAULT_KEEPALIVE_S))
    except ValueError:
        return DEFAULT_KEEPALIVE_S
    if not math.isfinite(seconds) or seconds <= 0:
        return DEFAULT_KEEPALIVE_S
    return min(max(seconds, MIN_KEEPALIVE_S), MAX_KEEPALIVE_S)
