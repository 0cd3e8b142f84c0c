"""Every rendered tool definition and result is valid for the official SDKs' types and JSON Schema
draft 2020-12; the @tool decorator makes schemas from signatures. No server needed."""

from __future__ import annotations

from typing import Annotated, Literal

import mcp.types
import pytest
from anthropic.types import ToolParam, ToolResultBlockParam
from jsonschema import Draft202012Validator
from openai.types.chat import (
    ChatCompletionFunctionToolParam, ChatCompletionToolMessageParam, ChatCompletionUserMessageParam,
)
from openai.types.responses import FunctionToolParam
from openai.types.responses.response_input_item_param import FunctionCallOutput
from pydantic import BaseModel, Field, TypeAdapter

from sandlot import InvalidArgument
from sandlot.tools import BUILTIN, ImageContent, TextContent, Tool, ToolResult, Toolset, tool

toolset = Toolset(None)


def check(typ, value):
    """Valid for the SDK's TypedDict, and no key it does not know (pydantic ignores extra keys)."""
    TypeAdapter(typ).validate_python(value)
    assert set(value) <= typ.__required_keys__ | typ.__optional_keys__, set(value)


@pytest.mark.parametrize("definition", toolset.openai_tools(), ids=lambda d: d["function"]["name"])
def test_openai_chat_definitions(definition):
    check(ChatCompletionFunctionToolParam, definition)
    Draft202012Validator.check_schema(definition["function"]["parameters"])


@pytest.mark.parametrize("definition", toolset.responses_tools(), ids=lambda d: d["name"])
def test_openai_responses_definitions(definition):
    check(FunctionToolParam, definition)


@pytest.mark.parametrize("definition", toolset.anthropic_tools(), ids=lambda d: d["name"])
def test_anthropic_definitions(definition):
    check(ToolParam, definition)
    Draft202012Validator.check_schema(definition["input_schema"])


@pytest.mark.parametrize("definition", toolset.mcp_tools(), ids=lambda d: d["name"])
def test_mcp_definitions(definition):
    parsed = mcp.types.Tool.model_validate(definition)
    assert parsed.input_schema == definition["inputSchema"]


def test_schemas_are_self_contained_and_closed():
    for t in BUILTIN.values():
        text = repr(t.parameters)
        assert "$ref" not in text and "'title'" not in text, t.name
        assert t.parameters["type"] == "object" and t.parameters["additionalProperties"] is False
        assert len(t.description) > 20
    assert len(BUILTIN) == 30


def test_arguments_validate_against_the_schema_they_come_from():
    edit = BUILTIN["edit_file"]
    good = {"path": "a.py", "edits": [{"old_text": "a", "new_text": "b"}]}
    Draft202012Validator(edit.parameters).validate(good)
    assert edit.validate(good)["dry_run"] is False
    for bad in ({"path": "a.py", "edits": []}, {"path": "a.py", "edits": [{"old_text": ""}]}):
        assert not Draft202012Validator(edit.parameters).is_valid(bad)
        with pytest.raises(InvalidArgument):
            edit.validate(bad)


IMAGE = ImageContent("iVBORw0KGgo=", "image/png")


@pytest.mark.parametrize("result", [ToolResult.of("hi"), ToolResult.error("boom"), ToolResult([]),
                                    ToolResult([TextContent("plot:"), IMAGE], data={"n": 1})], ids=str)
def test_results_fit_each_api(result):
    tool_message, *images = result.to_openai("call_1")
    check(ChatCompletionToolMessageParam, tool_message)
    for message in images:
        check(ChatCompletionUserMessageParam, message)
    assert bool(images) == bool(result.images)
    check(FunctionCallOutput, result.to_openai_responses("call_1"))
    check(ToolResultBlockParam, result.to_anthropic("toolu_1"))
    parsed = mcp.types.CallToolResult.model_validate(result.to_mcp())
    assert parsed.is_error == result.is_error


class Point(BaseModel):
    x: int
    y: int


def test_tool_decorator_makes_schema_from_signature():
    @tool(category="math")
    def calculate_power(base: Annotated[int, "The base"], exponent: int = 2,
                        mode: Literal["exact", "float"] = "exact", at: Point | None = None) -> int:
        """Compute base to the power of exponent."""
        return base ** exponent

    assert isinstance(calculate_power, Tool) and not calculate_power.needs_sandbox
    params = calculate_power.parameters
    assert params["required"] == ["base"]
    assert params["properties"]["base"] == {"description": "The base", "type": "integer"}
    assert params["properties"]["mode"]["enum"] == ["exact", "float"]
    Draft202012Validator.check_schema(params)
    assert calculate_power.schema["function"]["description"] == "Compute base to the power of exponent."
    # a function tool runs in this process, blocking or not
    assert calculate_power(3, exponent=4).text == "81"
    r = Toolset(None, [calculate_power]).call_tool("calculate_power", {"base": "x"})
    assert r.is_error and "base: Input should be a valid integer" in r.text


def test_tool_decorator_refuses_what_a_model_cannot_call():
    with pytest.raises(InvalidArgument, match="type annotation"):
        @tool
        def untyped(x):
            """Doc."""
    with pytest.raises(InvalidArgument, match="description"):
        @tool
        def undocumented(x: int):
            pass
    with pytest.raises(InvalidArgument, match="tool names"):
        tool(name="has space", description="d")(lambda: None)


def test_a_failing_function_tool_is_an_error_result():
    @tool
    async def broken(n: Annotated[int, Field(ge=0)]) -> str:
        """Always fails."""
        raise ValueError(f"bad {n}")

    r = Toolset(None, [broken]).call_tool("broken", {"n": 1})
    assert r.is_error and r.text == "ValueError: bad 1"
    assert Toolset(None, [broken]).call_tool("broken", {"n": -1}).is_error
