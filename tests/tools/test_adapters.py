"""The OpenAI Agents SDK and LangChain adapters: tools those frameworks accept, calling a real sandbox."""

from __future__ import annotations

import json

import pytest

from sandlot import AsyncSandbox
from sandlot.tools import AsyncToolset, Toolset


def test_openai_agents_function_tools(sandbox):
    from agents import FunctionTool

    from sandlot.tools.adapters.openai_agents import function_tools

    tools = function_tools(Toolset(sandbox, categories="code"))
    assert all(isinstance(t, FunctionTool) for t in tools)
    shell = next(t for t in tools if t.name == "run_shell_command")
    assert shell.params_json_schema["required"] == ["command"] and shell.strict_json_schema is False
    import asyncio

    out = asyncio.run(shell.on_invoke_tool(None, json.dumps({"command": "echo agents"})))
    assert out == "agents"
    failed = asyncio.run(shell.on_invoke_tool(None, json.dumps({"command": "exit 3"})))
    assert failed == "Error: [exit code 3]"


async def test_openai_agents_with_an_async_toolset(conn):
    from sandlot.tools.adapters.openai_agents import function_tools

    async with await AsyncSandbox.create(**conn) as sbx:
        [tool] = function_tools(AsyncToolset(sbx, ["run_python_code"]))
        assert await tool.on_invoke_tool(None, '{"code": "print(3 * 3)"}') == "9"


def test_langchain_tools(sandbox):
    from langchain_core.tools import BaseTool
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from sandlot.tools.adapters.langchain import langchain_tools

    toolset = Toolset(sandbox, ["write_file", "read_file"])
    tools = {t.name: t for t in langchain_tools(toolset)}
    assert all(isinstance(t, BaseTool) for t in tools.values())
    assert tools["write_file"].invoke({"path": "lc.txt", "content": "from langchain"}).startswith("Wrote")
    assert tools["read_file"].invoke({"path": "lc.txt"}) == "from langchain"
    import asyncio

    assert asyncio.run(tools["read_file"].ainvoke({"path": "lc.txt"})) == "from langchain"
    assert tools["read_file"].invoke({"path": "missing.txt"}).startswith("Error: ")
    rendered = convert_to_openai_tool(tools["read_file"])
    assert rendered["function"]["parameters"]["properties"].keys() == {"path", "offset", "limit"}


@pytest.mark.parametrize("module", ["openai_agents", "langchain"])
def test_adapters_cover_every_tool(module):
    import importlib

    adapter = importlib.import_module(f"sandlot.tools.adapters.{module}")
    make = adapter.function_tools if module == "openai_agents" else adapter.langchain_tools
    assert [t.name for t in make(Toolset(None))] == Toolset(None).names
