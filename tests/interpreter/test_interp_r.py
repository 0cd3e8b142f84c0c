"""R contexts (IRkernel) through the official SDK, as E2B's behave: results as IRkernel shows them
(`[1] 2`, display data rather than a main result), env vars (sandbox-wide, per run, overwritten
for one run), cwd, errors, state, interrupts, restart, and what list_code_contexts says."""

from __future__ import annotations

import time

import httpx
import pytest
from e2b_code_interpreter import Context
from interp_support import jupyter_headers, ok, plain, stdout
from support import access_token, unique


@pytest.fixture(scope="module")
def r_context(sandbox):
    context = sandbox.create_code_context(language="r")
    yield context
    sandbox.remove_code_context(context)


def text(execution) -> str:
    """The text of the run's first result: IRkernel displays values (E2B's tests read results[0])."""
    assert execution.results, execution
    return execution.results[0].text


def test_r_results_and_state(sandbox, r_context):
    execution = ok(sandbox.run_code("1 + 1", context=r_context))
    assert text(execution) == "[1] 2"
    ok(sandbox.run_code("x <- c(3, 4)\ny <- sum(x)", context=r_context))
    assert text(ok(sandbox.run_code("y * 2", context=r_context))) == "[1] 14"
    frame = ok(sandbox.run_code("data.frame(a = 1:2, b = c('u', 'v'))", context=r_context)).results[0]
    assert "<table" in frame.html and "A data.frame: 2" in frame.text + frame.html


def test_r_stdout_and_execution_count(sandbox):
    context = sandbox.create_code_context(language="r")
    try:
        first = ok(sandbox.run_code('cat("hello\\n"); print("there")', context=context))
        assert stdout(first) == 'hello\n[1] "there"\n'
        assert first.execution_count == 1
        assert ok(sandbox.run_code("1", context=context)).execution_count == 2
    finally:
        sandbox.remove_code_context(context)


def test_r_language_alone_uses_its_default_context(sandbox):
    token = unique("r")
    ok(sandbox.run_code(f'kept <- "{token}"', language="r"))
    assert text(ok(sandbox.run_code("kept", language="r"))) == f'[1] "{token}"'
    assert text(ok(sandbox.run_code("getwd()", language="R"))) == '[1] "/home/user"'


def test_r_errors(sandbox, r_context):
    execution = sandbox.run_code('stop("boom")', context=r_context)
    assert execution.error is not None
    assert "boom" in execution.error.value and "boom" in plain(execution.error.traceback)
    execution = sandbox.run_code("undefined_thing_here + 1", context=r_context)
    assert execution.error is not None and "undefined_thing_here" in execution.error.value
    execution = sandbox.run_code("1 +* 2", context=r_context)  # a parse error
    assert execution.error is not None
    assert text(ok(sandbox.run_code("40 + 2", context=r_context))) == "[1] 42"  # still usable


def test_r_env_vars_on_sandbox(make_sandbox):
    """E2B's test_env_vars_on_sandbox for R, and its overwrite for one run."""
    sbx = make_sandbox(envs={"TEST_ENV_VAR": "supertest"})
    assert text(ok(sbx.run_code("Sys.getenv('TEST_ENV_VAR')", language="r"))) == '[1] "supertest"'
    overwritten = ok(sbx.run_code("Sys.getenv('TEST_ENV_VAR')", language="r", envs={"TEST_ENV_VAR": "overwrite"}))
    assert text(overwritten) == '[1] "overwrite"'
    assert text(ok(sbx.run_code("Sys.getenv('TEST_ENV_VAR')", language="r"))) == '[1] "supertest"'


def test_r_env_vars_per_execution(sandbox, r_context):
    result = ok(sandbox.run_code("Sys.getenv('FOO')", envs={"FOO": "bar"}, context=r_context))
    after = ok(sandbox.run_code("Sys.getenv('FOO', unset = 'default')", context=r_context))
    assert text(result) == '[1] "bar"'
    assert text(after) == '[1] "default"'
    # subprocesses of the run see it; quotes and newlines arrive intact
    value = "it's \"quoted\"\nand\ttabbed"
    result = ok(sandbox.run_code("cat(system('printenv ODD', intern = TRUE), sep = '\\n')",
                                 envs={"ODD": value}, context=r_context))
    assert stdout(result) == value + "\n"
    # a value the code set itself comes back after a run that overrode it
    ok(sandbox.run_code("Sys.setenv(MINE = 'before')", context=r_context))
    assert text(ok(sandbox.run_code("Sys.getenv('MINE')", envs={"MINE": "during"}, context=r_context))) == '[1] "during"'
    assert text(ok(sandbox.run_code("Sys.getenv('MINE')", context=r_context))) == '[1] "before"'
    # rm(list = ls()) between set-up and restore cannot leave the run's variable behind
    ok(sandbox.run_code("rm(list = ls())", envs={"GONE": "1"}, context=r_context))
    assert text(ok(sandbox.run_code("Sys.getenv('GONE', unset = 'unset')", context=r_context))) == '[1] "unset"'


def test_r_context_cwd_and_env(sandbox):
    context = sandbox.create_code_context(language="r", cwd="/tmp")
    try:
        assert (context.language, context.cwd) == ("r", "/tmp")
        assert text(ok(sandbox.run_code("getwd()", context=context))) == '[1] "/tmp"'
        ok(sandbox.run_code("writeLines('from r', 'made-by-r.txt')", context=context))
        assert sandbox.files.read("/tmp/made-by-r.txt") == "from r\n"
        listed = {c.id: (c.language, c.cwd) for c in sandbox.list_code_contexts()}
        assert listed[context.id] == ("r", "/tmp")
    finally:
        sandbox.remove_code_context(context)


def test_r_interrupt_by_timeout_and_restart(sandbox):
    context = sandbox.create_code_context(language="r")
    try:
        ok(sandbox.run_code("kept <- 1", context=context))
        start = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - the SDK's read timeout (TimeoutException)
            sandbox.run_code("Sys.sleep(60)", context=context, timeout=3)
        assert time.monotonic() - start < 30
        # the client went away: the run was interrupted, the context kept its state
        assert text(ok(sandbox.run_code("kept + 1", context=context, timeout=60))) == "[1] 2"
        sandbox.restart_code_context(context)
        execution = sandbox.run_code("kept", context=context, timeout=60)
        assert execution.error is not None and "kept" in execution.error.value
    finally:
        sandbox.remove_code_context(context)


def test_r_kernel_death_restarts_the_context(sandbox):
    context = sandbox.create_code_context(language="r")
    try:
        ok(sandbox.run_code("kept <- 1", context=context))
        execution = sandbox.run_code("tools::pskill(Sys.getpid(), tools::SIGKILL)", context=context, timeout=60)
        assert execution.error is not None and execution.error.name == "KernelDied", execution.error
        assert "signal 9" in execution.error.value
        assert text(ok(sandbox.run_code("exists('kept')", context=context, timeout=60))) == "[1] FALSE"
    finally:
        sandbox.remove_code_context(context)


def test_r_context_variables(server, sandbox):
    """sandlot's `variables` on POST /contexts (its SDK's create_code_context(variables=...))."""
    variables = {"count": 3, "name": "it's \"x\"\nnext", "items": [1, 2, 3]}
    r = httpx.post(f"{server.url}/contexts", json={"language": "r", "variables": variables}, timeout=120,
                   headers=jupyter_headers(sandbox.sandbox_id, access_token(server, sandbox.sandbox_id)))
    assert r.status_code == 200, r.text
    context = Context.from_json(r.json())
    try:
        assert text(ok(sandbox.run_code("count * 2", context=context))) == "[1] 6"
        assert stdout(ok(sandbox.run_code("cat(name)", context=context))) == variables["name"]
        assert text(ok(sandbox.run_code("sum(items)", context=context))) == "[1] 6"
    finally:
        sandbox.remove_code_context(context)
