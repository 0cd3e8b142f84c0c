"""Helpers that let one async test body drive both the blocking and the async surface of sandlot's
SDK (tests/client, tests/packages)."""

from __future__ import annotations

import asyncio
import inspect


async def maybe(value):
    """Await the async surface's coroutines; the blocking surface already has the result."""
    return await value if inspect.isawaitable(value) else value


async def collect(iterable, limit: int | None = None) -> list:
    """Items of an iterator of either surface (up to `limit`)."""
    items = []
    if hasattr(iterable, "__aiter__"):
        async for item in iterable:
            items.append(item)
            if limit and len(items) >= limit:
                break
    else:
        for item in iterable:
            items.append(item)
            if limit and len(items) >= limit:
                break
    return items


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """Poll an (async or plain) check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await maybe(check())
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(interval)
