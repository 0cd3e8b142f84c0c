"""`sandlot run-code` against a real server (typer's CliRunner, in-process)."""

from __future__ import annotations

import json

import pytest

from sandlot import Sandbox


def _created(cli, *args: str):
    result = cli("create", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def ci_id(cli, server):
    sid = _created(cli, "--template", "code-interpreter")
    yield sid
    Sandbox.kill(sid, api_url=server.url, api_key=server.api_key)


def test_run_code_streams_output_then_the_value(cli, ci_id):
    ran = cli("run-code", ci_id, "import sys\nprint('hi')\nprint('oops', file=sys.stderr)\nx = 6 * 7\nx")
    assert (ran.exit_code, ran.stdout, ran.stderr) == (0, "hi\n42\n", "oops\n")
    assert cli("run-code", ci_id, "x + 1").stdout == "43\n"  # the state persists between invocations
    assert cli("run-code", ci_id, "y = 1").stdout == ""  # nothing to show


def test_run_code_from_stdin(cli, ci_id):
    assert cli("run-code", ci_id, "-", input="print(2 + 2)\n").stdout == "4\n"
    assert cli("run-code", ci_id, input="'no dash'").stdout == "no dash\n"


def test_run_code_error_exits_non_zero_with_the_traceback(cli, ci_id):
    ran = cli("run-code", ci_id, "print('before')\n1 / 0")
    assert ran.exit_code == 1 and ran.stdout == "before\n"
    assert "ZeroDivisionError" in ran.stderr and "1 / 0" in ran.stderr
    assert "\x1b[" not in ran.stderr  # not a terminal: no colours


def test_run_code_json(cli, ci_id):
    ran = cli("run-code", ci_id, "--json", "print('a')\n{'k': 1}")
    assert ran.exit_code == 0, ran.output
    data = json.loads(ran.stdout)
    assert data["text"] == "{'k': 1}" and data["logs"] == {"stdout": ["a\n"], "stderr": []}
    assert data["error"] is None and data["execution_count"] == 1
    assert data["results"][0]["is_main_result"] is True
    failed = cli("run-code", ci_id, "--json", "raise KeyError('z')")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["error"]["name"] == "KeyError"


def test_run_code_language_and_context(cli, ci_id, server):
    assert cli("run-code", ci_id, "--language", "bash", "echo $((2 + 3))").stdout == "5\n"
    assert cli("run-code", ci_id, "-l", "javascript", "const j = 6; j * 7").stdout == "42\n"
    assert cli("run-code", ci_id, "-l", "javascript", "console.log(j + 1)").stdout == "7\n"  # its state persists
    assert cli("run-code", ci_id, "-l", "typescript", "const t: number = 2; t ** 3").stdout == "8\n"
    sandbox = Sandbox.connect(ci_id, api_url=server.url, api_key=server.api_key)
    try:
        ctx = sandbox.create_code_context(variables={"only_here": "ctx"})
    finally:
        sandbox.close()
    assert cli("run-code", ci_id, "--context", ctx.id, "only_here").stdout == "ctx\n"
    assert "NameError" in cli("run-code", ci_id, "only_here").stderr
    both = cli("run-code", ci_id, "--context", ctx.id, "--language", "python", "1")
    assert both.exit_code == 2
    missing = cli("run-code", ci_id, "--context", "nosuchcontext", "1")
    assert missing.exit_code == 1 and missing.stderr.startswith("error:")


def test_run_code_timeout(cli, ci_id):
    ran = cli("run-code", ci_id, "--timeout", "1", "import time\ntime.sleep(30)")
    assert ran.exit_code == 124 and "did not finish within 1s" in ran.stderr  # as timeout(1)
    assert cli("run-code", ci_id, "'still here'").stdout == "still here\n"


def test_run_code_on_a_base_sandbox(cli, server):
    sid = _created(cli)
    try:
        ran = cli("run-code", sid, "1")
        assert ran.exit_code == 1 and "code-interpreter" in ran.stderr
    finally:
        Sandbox.kill(sid, api_url=server.url, api_key=server.api_key)
