"""Helpers shared by the package tests."""

from __future__ import annotations

import shlex

from sdk_support import maybe


async def python(sandbox, code: str, user: str | None = None):
    """Run python3 -c CODE in the sandbox; the CommandResult, whatever its exit code."""
    return await maybe(sandbox.commands.run(f"python3 -c {shlex.quote(code)}", user=user, check=False))
