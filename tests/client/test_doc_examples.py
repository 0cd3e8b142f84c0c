"""The examples in the SDK's docstrings and the README run, as written, against the test server,
and the README's print what their `# -> ...` comments say."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

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


README = Path(__file__).resolve().parents[2] / "README.md"
README_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def promised(code: str) -> list[str]:
    """What a block says it prints: each `# -> X` comment's X, without a trailing "(explanation)"."""
    return [re.sub(r"\s+\((?=[A-Za-z]).*\)$", "", m.group(1).strip())
            for m in re.finditer(r"#\s*->\s*(.+)$", code, re.M)]


def test_readme_has_python_examples():
    assert len(README_BLOCKS) >= 3 and all(promised(block) for block in README_BLOCKS)


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_examples_print_what_they_say(index, server):
    code = README_BLOCKS[index]
    env = {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key, **server.env()}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = iter(done.stdout.splitlines())
    for expected in promised(code):  # in order, each a whole line of what the block printed
        assert any(line == expected for line in printed), f"expected {expected!r} in:\n{done.stdout}"
