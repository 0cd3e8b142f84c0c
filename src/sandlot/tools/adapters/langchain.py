"""A toolset as LangChain tools.

    from sandlot.tools.adapters.langchain import langchain_tools

    llm_with_tools = llm.bind_tools(langchain_tools(toolset))
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool

from .._toolset import AsyncToolset, _BaseToolset
from .openai_agents import _text


def langchain_tools(toolset: _BaseToolset) -> list[StructuredTool]:
    """One StructuredTool per tool, its arguments the tool's JSON Schema. A blocking `Toolset` gives
    tools usable with `invoke` and `ainvoke`; an `AsyncToolset` tools for `ainvoke`."""

    def make(name: str) -> StructuredTool:
        tool = toolset.get(name)

        async def acall(**arguments: Any) -> str:
            if isinstance(toolset, AsyncToolset):
                return _text(await toolset.call_tool(name, arguments))
            import asyncio

            return _text(await asyncio.to_thread(toolset.call_tool, name, arguments))

        def call(**arguments: Any) -> str:
            return _text(toolset.call_tool(name, arguments))

        return StructuredTool.from_function(func=None if isinstance(toolset, AsyncToolset) else call,
                                            coroutine=acall, name=name, description=tool.description,
                                            args_schema=tool.parameters)

    return [make(t.name) for t in toolset]
