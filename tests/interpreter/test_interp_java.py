"""Java contexts (a JShell in sandlot's runner) through the official SDK, as E2B's (IJava) behave:
the value of the last expression as the main result (a String as itself), env vars as system
properties (sandbox-wide, per run, overwritten for one run), cwd, errors named as IJava names
them, state between runs, interrupts, restart, and what list_code_contexts says."""

from __future__ import annotations

import time

import httpx
import pytest
from e2b_code_interpreter import Context
from interp_support import jupyter_headers, ok, stderr, stdout
from support import access_token


@pytest.fixture(scope="module")
def java_context(sandbox):
    context = sandbox.create_code_context(language="java")
    yield context
    sandbox.remove_code_context(context)


def test_java_results_and_state(sandbox, java_context):
    assert ok(sandbox.run_code("1 + 1", context=java_context)).text == "2"
    execution = ok(sandbox.run_code('int x = 5;\nSystem.out.println("x is " + x);\nx * 2', context=java_context))
    assert stdout(execution) == "x is 5\n" and execution.text == "10"
    assert ok(sandbox.run_code("x + 1", context=java_context)).text == "6"  # state kept
    assert ok(sandbox.run_code('"quoted \\"in\\" here"', context=java_context)).text == 'quoted "in" here'
    assert ok(sandbox.run_code("String s = \"ab\";\ns.repeat(2)", context=java_context)).text == "abab"
    # declarations alone show nothing, as IJava
    assert ok(sandbox.run_code("int y = 1;", context=java_context)).results == []
    execution = ok(sandbox.run_code('System.err.println("warned"); java.util.List.of(1, 2)', context=java_context))
    assert stderr(execution) == "warned\n" and execution.text == "[1, 2]"


def test_java_methods_classes_and_imports(sandbox, java_context):
    code = ("import java.util.stream.*;\n"
            "record Point(int x, int y) {}\n"
            "int square(int n) { return n * n; }\n"
            "IntStream.rangeClosed(1, 4).map(n -> square(n)).sum()")
    assert ok(sandbox.run_code(code, context=java_context)).text == "30"
    assert ok(sandbox.run_code("new Point(1, 2)", context=java_context)).text == "Point[x=1, y=2]"


def test_java_execution_count(sandbox):
    context = sandbox.create_code_context(language="java")
    try:
        assert ok(sandbox.run_code("1", context=context)).execution_count == 1
        assert ok(sandbox.run_code("2", context=context)).execution_count == 2
    finally:
        sandbox.remove_code_context(context)


def test_java_errors(sandbox, java_context):
    execution = sandbox.run_code("int z = 1 / 0;", context=java_context)
    assert execution.error is not None and execution.error.name == "EvalException"
    assert execution.error.value == "/ by zero"
    assert execution.error.traceback.startswith("java.lang.ArithmeticException: / by zero")
    execution = sandbox.run_code('int bad = "text";', context=java_context)
    assert execution.error is not None and execution.error.name == "CompilationException"
    assert "incompatible types" in execution.error.value
    execution = sandbox.run_code("if (true) {", context=java_context)
    assert execution.error is not None and execution.error.name == "IncompleteSourceException"
    execution = sandbox.run_code('throw new IllegalStateException("mine");', context=java_context)
    assert execution.error is not None and execution.error.value == "mine"
    assert "java.lang.IllegalStateException: mine" in execution.error.traceback
    # the first failing snippet ends the run: what follows it does not run
    execution = sandbox.run_code('int first = 1 / 0;\nSystem.out.println("after");', context=java_context)
    assert execution.error is not None and stdout(execution) == ""
    assert ok(sandbox.run_code("40 + 2", context=java_context)).text == "42"  # still usable


def test_java_env_vars_on_sandbox(make_sandbox):
    """E2B's env var tests for java: system properties, and the process's environment too."""
    sbx = make_sandbox(envs={"TEST_ENV_VAR": "supertest"})
    assert ok(sbx.run_code('System.getProperty("TEST_ENV_VAR")', language="java")).text == "supertest"
    assert ok(sbx.run_code('System.getenv("TEST_ENV_VAR")', language="java")).text == "supertest"
    overwritten = sbx.run_code('System.getProperty("TEST_ENV_VAR")', language="java", envs={"TEST_ENV_VAR": "overwrite"})
    assert ok(overwritten).text == "overwrite"
    assert ok(sbx.run_code('System.getProperty("TEST_ENV_VAR")', language="java")).text == "supertest"


def test_java_env_vars_per_execution(sandbox, java_context):
    result = ok(sandbox.run_code('System.getProperty("FOO")', envs={"FOO": "bar"}, context=java_context))
    after = ok(sandbox.run_code('System.getProperty("FOO", "default")', context=java_context))
    assert (result.text, after.text) == ("bar", "default")
    value = "it's \"quoted\"\nand\ttabbed \u00e9"
    assert ok(sandbox.run_code('System.getProperty("ODD")', envs={"ODD": value}, context=java_context)).text == value
    # a property the code set itself comes back after a run that overrode it
    ok(sandbox.run_code('System.setProperty("MINE", "before");', context=java_context))
    assert ok(sandbox.run_code('System.getProperty("MINE")', envs={"MINE": "during"}, context=java_context)).text == "during"
    assert ok(sandbox.run_code('System.getProperty("MINE")', context=java_context)).text == "before"
    # restored even when the run fails
    sandbox.run_code("int boom = 1 / 0;", envs={"FAILED": "1"}, context=java_context)
    assert ok(sandbox.run_code('System.getProperty("FAILED", "unset")', context=java_context)).text == "unset"


def test_java_context_cwd(sandbox):
    context = sandbox.create_code_context(language="java", cwd="/tmp")
    try:
        assert (context.language, context.cwd) == ("java", "/tmp")
        assert ok(sandbox.run_code('System.getProperty("user.dir")', context=context)).text == "/tmp"
        code = 'java.nio.file.Files.writeString(java.nio.file.Path.of("made-by-java.txt"), "from java");'
        ok(sandbox.run_code(code, context=context))
        assert sandbox.files.read("/tmp/made-by-java.txt") == "from java"
        listed = {c.id: (c.language, c.cwd) for c in sandbox.list_code_contexts()}
        assert listed[context.id] == ("java", "/tmp")
    finally:
        sandbox.remove_code_context(context)


def test_java_interrupt_by_timeout_and_restart(sandbox):
    context = sandbox.create_code_context(language="java")
    try:
        ok(sandbox.run_code("int kept = 1;", context=context))
        start = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - the SDK's read timeout (TimeoutException)
            sandbox.run_code("long n = 0; while (true) { n++; }", context=context, timeout=3)
        assert time.monotonic() - start < 30
        # the busy loop was stopped: the context answers, its state kept
        assert ok(sandbox.run_code("kept + 1", context=context, timeout=60)).text == "2"
        sandbox.restart_code_context(context)
        execution = sandbox.run_code("kept", context=context, timeout=60)
        assert execution.error is not None and execution.error.name == "CompilationException"
    finally:
        sandbox.remove_code_context(context)


def test_java_exit_is_a_kernel_death(sandbox):
    context = sandbox.create_code_context(language="java")
    try:
        execution = sandbox.run_code("System.exit(3);", context=context, timeout=60)
        assert execution.error is not None and execution.error.name == "KernelDied", execution.error
        assert "exit status 3" in execution.error.value
        assert ok(sandbox.run_code("6 * 7", context=context, timeout=60)).text == "42"
    finally:
        sandbox.remove_code_context(context)


def test_java_context_variables(server, sandbox):
    """sandlot's `variables` on POST /contexts (its SDK's create_code_context(variables=...)):
    JSON values become Java variables of the matching type, anything else its JSON text."""
    variables = {"count": 3, "big": 2**40, "ratio": 0.5, "name": "it's \"x\"\nnext", "flag": True,
                 "nothing": None, "items": [1, "a"]}
    r = httpx.post(f"{server.url}/contexts", json={"language": "java", "variables": variables}, timeout=120,
                   headers=jupyter_headers(sandbox.sandbox_id, access_token(server, sandbox.sandbox_id)))
    assert r.status_code == 200, r.text
    context = Context.from_json(r.json())
    try:
        code = 'count * 2 + " " + big + " " + ratio + " " + flag + " " + nothing + " " + items'
        assert ok(sandbox.run_code(code, context=context)).text == '6 1099511627776 0.5 true null [1, "a"]'
        assert ok(sandbox.run_code("name", context=context)).text == variables["name"]
    finally:
        sandbox.remove_code_context(context)
