"""Environment variable tools (for commands started afterwards; see AsyncSandbox.set_envs)."""

from __future__ import annotations

import shlex
from typing import Annotated

from pydantic import Field

from .._context import ToolContext
from .._result import TextContent, ToolResult
from .._tool import tool

Name = Annotated[str, Field(description="Variable name, e.g. API_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


@tool(category="environment")
async def set_environment_variable(ctx: ToolContext, key: Name, value: Annotated[str, "Its value"]) -> ToolResult:
    """Set an environment variable for every command run in the sandbox from now on."""
    await ctx.sandbox.set_envs({key: value})
    return ToolResult([TextContent(f"{key} is set for commands from now on")], data={"key": key, "value": value})


@tool(category="environment")
async def get_environment_variable(ctx: ToolContext, key: Name) -> ToolResult:
    """The value of an environment variable as a command in the sandbox sees it."""
    result = await ctx.sandbox.commands.run(f"printenv {shlex.quote(key)}", user=ctx.user, check=False)
    if result.exit_code != 0:
        return ToolResult([TextContent(f"{key} is not set")], data={"key": key, "value": None})
    value = result.stdout[:-1] if result.stdout.endswith("\n") else result.stdout
    return ToolResult([TextContent(value)], data={"key": key, "value": value})
