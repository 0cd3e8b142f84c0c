"""Tools for language models, acting on sandlot sandboxes.

    from sandlot import Sandbox
    from sandlot.tools import Toolset

    with Sandbox.create() as sandbox:
        toolset = Toolset(sandbox)                           # every built-in tool, bound to it
        definitions = toolset.openai_tools()                 # or responses_/anthropic_/mcp_tools()
        result = toolset.call_tool("run_shell_command", {"command": "echo hi"})
        print(result.text, result.is_error)

One registry (`BUILTIN`, see builtin/) of `Tool`s, each a name, a description for the model, a JSON
Schema generated from its typed signature, and an implementation on the SDK. A toolset selects tools
(by name or category), binds them to a sandbox (or to a temporary sandbox per call), renders their
definitions for OpenAI (Chat Completions, Responses), Anthropic and MCP, and dispatches calls:
arguments are validated, and failures come back as error results, never as exceptions.

    _tool.py       Tool and the @tool decorator (schema from the signature)
    _result.py     ToolResult and its shape for each API
    _context.py    ToolContext: the sandbox, path rules, the output budget
    _toolset.py    AsyncToolset / Toolset, BoundTool, bind()
    builtin/       the built-in tools by category
    mcp_server.py  the registry as an MCP server (`sandlot mcp`, or mounted at /mcp)
    mcp_inside.py  MCP servers run inside a sandbox, reached over the agent's stdio
    adapters/      OpenAI Agents SDK and LangChain tools (optional extras)
"""

from __future__ import annotations

from typing import Any

from ._context import ToolContext
from ._result import ImageContent, TextContent, ToolResult
from ._tool import Tool, tool
from ._toolset import AsyncToolset, BoundTool, Toolset, bind
from .builtin import AGENTSCOPE_TOOLS, ALPHORA_TOOLS, BUILTIN


def list_tools(categories: Any = None) -> list[Tool]:
    """The built-in tools (of some categories)."""
    return Toolset(None, categories=categories).list_tools()


def call_tool(name: str, arguments: Any = None, sandbox: Any = None, **options: Any) -> ToolResult:
    """Run one built-in tool, blocking: on `sandbox`, or on a temporary sandbox made for the call."""
    return (bind(sandbox, **options) if sandbox is not None else Toolset(None, **options)).call_tool(name, arguments)


globals().update(BUILTIN)  # `from sandlot.tools import run_shell_command` (AgentScope's style)

__all__ = sorted([
    "AGENTSCOPE_TOOLS", "ALPHORA_TOOLS", "AsyncToolset", "BUILTIN", "BoundTool", "ImageContent", "TextContent",
    "Tool", "ToolContext", "ToolResult", "Toolset", "bind", "call_tool", "list_tools", "tool", *BUILTIN,
])
