"""Helpers shared by the package tests."""

from __future__ import annotations

import inspect
import shlex


async def maybe(value):
    """Await the async surface's coroutines; the blocking surface already has the result."""
    return await value if inspect.isawaitable(value) else value


async def python(sandbox, code: str, user: str | None = None):
    """Run python3 -c CODE in the sandbox; the CommandResult, whatever its exit code."""
    return await maybe(sandbox.commands.run(f"python3 -c {shlex.quote(code)}", user=user, check=False))
