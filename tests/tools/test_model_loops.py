"""Full tool-calling loops: the real `openai` and `anthropic` clients talk to a scripted model server
(no real model is reachable here, see scripted_model.py), the toolset runs the calls in a real
sandbox, and the results travel back in each API's wire format.

Includes seed 001's OpenAI and Anthropic examples translated to sandlot, and the README's loop.
"""

from __future__ import annotations

import json
import textwrap

import anthropic
import openai
import pytest

from sandlot import AsyncSandbox
from sandlot.tools import AsyncToolset, Toolset
from scripted_model import ScriptedModel
from tool_helpers import tiny_png

SCRIPT = [[("save_file", {"path": "test.py", "content": "print('hello from the sandbox')"})],
          [("run_python_file", {"path": "test.py"}), ("run_python_code", {"code": "print(1 + 1)"})]]


async def test_seed_001_openai_loop(conn):
    """Seed 001: tools = SandboxTools(sandbox); get_openai_tools(); chat.completions.create(...,
    tools=...); execute_tool(name, json.loads(arguments)) for each tool call."""
    with ScriptedModel(SCRIPT) as model:
        client = openai.AsyncOpenAI(base_url=model.url + "/v1", api_key="scripted")
        async with await AsyncSandbox.create(**conn) as sandbox:
            tools = AsyncToolset(sandbox)
            openai_tools = tools.openai_tools()
            messages = [{"role": "user", "content": "Write test.py and run it."}]
            while True:
                response = await client.chat.completions.create(model="gpt-4", messages=messages, tools=openai_tools)
                message = response.choices[0].message
                messages.append(message.model_dump(exclude_none=True))
                if not message.tool_calls:
                    break
                for tool_call in message.tool_calls:
                    result = await tools.execute_tool(tool_call.function.name, json.loads(tool_call.function.arguments))
                    messages += result.to_openai(tool_call.id)
        await client.close()
    assert json.loads(message.content.removeprefix("Tool results: ")) == ["hello from the sandbox", "2"]
    assert model.requests[0]["tools"] == openai_tools  # sent as rendered
    assert len(model.requests) == 3


async def test_seed_001_anthropic_loop(conn):
    """Seed 001: get_anthropic_tools(); messages.create(..., tools=...); tool_use blocks executed and
    answered with tool_result blocks."""
    with ScriptedModel(SCRIPT + [[("read_file", {"path": "missing.txt"})]]) as model:
        client = anthropic.AsyncAnthropic(base_url=model.url, api_key="scripted")
        async with await AsyncSandbox.create(**conn) as sandbox:
            tools = AsyncToolset(sandbox)
            anthropic_tools = tools.anthropic_tools()
            messages = [{"role": "user", "content": "Write test.py and run it."}]
            while True:
                response = await client.messages.create(model="claude-3-opus", max_tokens=1024, messages=messages,
                                                        tools=anthropic_tools)
                messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                                  for b in response.content]})
                if response.stop_reason != "tool_use":
                    break
                messages.append({"role": "user", "content": await tools.answer_anthropic(response.content)})
        await client.close()
    [last] = json.loads(response.content[0].text.removeprefix("Tool results: "))
    assert last["is_error"] is True and "missing.txt" in last["content"][0]["text"]
    first_results = model.requests[2]["messages"][-1]["content"]
    assert [b["content"][0]["text"] for b in first_results] == ["hello from the sandbox", "2"]


def test_responses_api_loop(sandbox):
    with ScriptedModel(SCRIPT) as model:
        client = openai.OpenAI(base_url=model.url + "/v1", api_key="scripted")
        tools = Toolset(sandbox)
        items: list = [{"role": "user", "content": "Write test.py and run it."}]
        while True:
            response = client.responses.create(model="gpt-4.1", input=items, tools=tools.responses_tools())
            calls = [o for o in response.output if o.type == "function_call"]
            if not calls:
                break
            items += [c.model_dump(exclude_none=True) for c in calls]
            items += tools.answer_responses(response.output)
        client.close()
    assert json.loads(response.output_text.removeprefix("Tool results: ")) == ["hello from the sandbox", "2"]


README_LOOP = textwrap.dedent("""
    from openai import OpenAI
    from sandlot import Sandbox
    from sandlot.tools import Toolset

    client, messages = OpenAI(), [{"role": "user", "content": "What is 2**100? Use Python."}]
    with Sandbox.create() as sandbox:
        tools = Toolset(sandbox, categories=["code", "files"])
        while (message := client.chat.completions.create(model="gpt-4.1", messages=messages,
                                                         tools=tools.openai_tools()).choices[0].message).tool_calls:
            messages += [message, *tools.answer_openai(message)]
    print(message.content)
""")


def test_readme_loop(server, monkeypatch, capsys):
    with ScriptedModel([[("run_python_code", {"code": "print(2**100)"})]]) as model:
        for name, value in {"OPENAI_BASE_URL": model.url + "/v1", "OPENAI_API_KEY": "scripted",
                            "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}.items():
            monkeypatch.setenv(name, value)
        exec(compile(README_LOOP, "<README>", "exec"), {})
    assert capsys.readouterr().out == f'Tool results: ["{2**100}"]\n'
    assert len(README_LOOP.strip().splitlines()) <= 12


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_image_results_reach_the_model(sandbox, api):
    """A plot from run_ipython_cell... here a PNG read by read_file: an image block for Anthropic, a
    follow-up user message with the image for Chat Completions."""
    sandbox.files.write("dot.png", tiny_png())
    with ScriptedModel([[("read_file", {"path": "dot.png"})]]) as model:
        tools = Toolset(sandbox, ["read_file"])
        if api == "openai":
            client = openai.OpenAI(base_url=model.url + "/v1", api_key="scripted")
            messages = [{"role": "user", "content": "Show dot.png"}]
            message = client.chat.completions.create(model="m", messages=messages, tools=tools.openai_tools()).choices[0].message
            messages += [message.model_dump(exclude_none=True), *tools.answer_openai(message)]
            client.chat.completions.create(model="m", messages=messages, tools=tools.openai_tools())
            image = model.requests[-1]["messages"][-1]["content"][1]["image_url"]["url"]
            assert image.startswith("data:image/png;base64,iVBOR")
        else:
            client = anthropic.Anthropic(base_url=model.url, api_key="scripted")
            messages = [{"role": "user", "content": "Show dot.png"}]
            response = client.messages.create(model="m", max_tokens=10, messages=messages, tools=tools.anthropic_tools())
            messages += [{"role": "assistant", "content": [b.model_dump() for b in response.content]},
                         {"role": "user", "content": tools.answer_anthropic(response.content)}]
            client.messages.create(model="m", max_tokens=10, messages=messages, tools=tools.anthropic_tools())
            block = model.requests[-1]["messages"][-1]["content"][0]["content"][0]
            assert block["type"] == "image" and block["source"]["media_type"] == "image/png"
        client.close()
