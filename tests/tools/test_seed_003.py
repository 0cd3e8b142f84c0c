"""Seed 003 (AgentScope) tool examples translated to sandlot: unbound tools in temporary sandboxes,
bind() to a sandbox, the tool schema, function tools."""

from __future__ import annotations

import json

import pytest

from sandlot import Sandbox
from sandlot.tools import Tool, Toolset, run_ipython_cell, run_shell_command, tool


@pytest.fixture
def env(server, monkeypatch):
    monkeypatch.setenv("SANDLOT_API_URL", server.url)
    monkeypatch.setenv("SANDLOT_API_KEY", server.api_key)


def test_unbound_tools_run_in_their_own_temporary_sandbox(env):
    result = run_ipython_cell(code="print('Setup successful!')")  # the code-interpreter template, made and killed
    assert result.text == "Setup successful!" and not result.is_error
    assert json.loads(json.dumps(result.to_mcp()))["content"][0]["text"] == "Setup successful!"
    assert run_shell_command(command="whoami").text == "user"


def test_bind_to_a_sandbox(env):
    with Sandbox.create(template="code-interpreter") as sandbox:
        func1 = run_ipython_cell.bind(sandbox=sandbox)
        func2 = run_shell_command.bind(sandbox=sandbox)
        func1(code="repo = 'agentscope-runtime'")
        assert func1(code="print(repo)").text == "agentscope-runtime"
        assert func2(command="whoami").text == "user"
    assert run_ipython_cell.template == "code-interpreter"  # the tool says which sandbox it needs


def test_tool_schema():
    schema = run_ipython_cell.schema
    assert schema["type"] == "function" and schema["function"]["name"] == "run_ipython_cell"
    assert schema["function"]["parameters"]["required"] == ["code"]
    json.dumps(schema)


class MathCalculator:
    def calculate_power(self, base: int, exponent: int) -> int:
        """Compute base to the power of exponent."""
        return base ** exponent


def test_function_tools():
    calculator = MathCalculator()
    tool_0 = tool(calculator.calculate_power)  # FunctionTool(calculator.calculate_power)

    @tool(name="calculate_power", description="Compute base to the power of exponent")
    def another_calculate_power(base: int, exponent: int) -> int:
        return base ** exponent

    for t in (tool_0, another_calculate_power):
        assert isinstance(t, Tool) and t.name == "calculate_power" and not t.needs_sandbox
        assert t(base=2, exponent=10).text == "1024"  # runs in this process, no sandbox
        assert t.parameters["required"] == ["base", "exponent"]
    assert Toolset(None, [tool_0]).openai_tools()[0]["function"]["name"] == "calculate_power"
