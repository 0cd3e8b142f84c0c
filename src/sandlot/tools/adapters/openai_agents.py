"""A toolset as OpenAI Agents SDK function tools.

    from agents import Agent
    from sandlot.tools.adapters.openai_agents import function_tools

    agent = Agent(name="coder", tools=function_tools(toolset))
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import FunctionTool

from .._result import ToolResult
from .._toolset import AsyncToolset, _BaseToolset


def _text(result: ToolResult) -> str:
    return ("Error: " if result.is_error else "") + (result.text or "(no output)")


def function_tools(toolset: _BaseToolset) -> list[FunctionTool]:
    """One FunctionTool per tool; calls go through the toolset's dispatcher (a blocking `Toolset`
    runs in a worker thread)."""

    def make(name: str) -> FunctionTool:
        async def invoke(ctx: Any, arguments: str) -> str:
            if isinstance(toolset, AsyncToolset):
                return _text(await toolset.call_tool(name, arguments))
            return _text(await asyncio.to_thread(toolset.call_tool, name, arguments))

        tool = toolset.get(name)
        return FunctionTool(name=name, description=tool.description, params_json_schema=tool.parameters,
                            on_invoke_tool=invoke, strict_json_schema=False)

    return [make(t.name) for t in toolset]
