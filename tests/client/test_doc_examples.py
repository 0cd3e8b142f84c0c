"""The examples in the SDK's docstrings run, as written, against the test server."""

from __future__ import annotations

import asyncio
import re
import textwrap

import pytest

import sandlot
from sandlot.client import (
    AsyncCommandHandle, AsyncCommands, AsyncFiles, AsyncPty, AsyncSandbox, CommandHandle, Sandbox,
)

DOCUMENTED = [sandlot, Sandbox, AsyncSandbox, CommandHandle, AsyncCommandHandle, AsyncCommands, AsyncFiles,
              AsyncPty]


def examples(obj) -> list[str]:
    """Code blocks of a docstring: paragraphs indented deeper than its prose (the closing quotes'
    indentation), the style used throughout."""
    doc = obj.__doc__
    last = doc.rsplit("\n", 1)[-1]
    base = len(last) if not last.strip() else 0
    blocks = []
    for paragraph in re.split(r"\n\s*\n", doc):
        lines = [line for line in paragraph.split("\n") if line.strip()]
        if lines and all(len(line) - len(line.lstrip()) > base for line in lines):
            blocks.append(textwrap.dedent("\n".join(lines)))
    return blocks


def runnable(code: str) -> str:
    """Wrap an example so it runs: async ones in a coroutine, ones that use an existing `sandbox` in
    a fresh one."""
    is_async = "await " in code or "async " in code
    if "sandbox." in code and "as sandbox" not in code:
        opener = "async with await AsyncSandbox.create() as sandbox:" if is_async else \
            "with Sandbox.create() as sandbox:"
        code = opener + "\n" + textwrap.indent(code, "    ")
    if is_async:
        code = "async def example():\n" + textwrap.indent(code, "    ") + "\nasyncio.run(example())"
    return code


@pytest.mark.parametrize("obj", DOCUMENTED, ids=lambda o: o.__name__)
def test_docstring_examples_run(obj, server, monkeypatch, capsys):
    monkeypatch.setenv("SANDLOT_API_URL", server.url)
    monkeypatch.setenv("SANDLOT_API_KEY", server.api_key)
    found = examples(obj)
    assert found, f"{obj.__name__} has no example"
    for code in found:
        exec(compile(runnable(code), f"<example in {obj.__name__}>", "exec"),
             {"asyncio": asyncio, "AsyncSandbox": AsyncSandbox, "Sandbox": Sandbox})
