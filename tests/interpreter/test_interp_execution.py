"""run_code with the official SDK: state, execution counts, streaming output, errors, per-run
environment variables, IPython magics and shell escapes, other languages, concurrency."""

from __future__ import annotations

import json
import threading
import time

import pytest
from e2b_code_interpreter import (
    Context,
    ExecutionError,
    InvalidArgumentException,
    NotFoundException,
    OutputMessage,
    Result,
    SandboxException,
)
from interp_support import ok, plain, stderr, stdout
from support import unique

# ---- state and execution counts ---------------------------------------------------------------


def test_state_persists_across_runs(sandbox, ctx):
    ok(sandbox.run_code("import math\ndef area(r):\n    return math.pi * r * r\nradius = 2", context=ctx))
    execution = ok(sandbox.run_code("round(area(radius), 3)", context=ctx))
    assert execution.text == "12.566"
    ok(sandbox.run_code("radius += 1", context=ctx))
    assert sandbox.run_code("radius", context=ctx).text == "3"


def test_default_context_keeps_state(sandbox):
    ok(sandbox.run_code("default_ctx_value = [1, 2, 3]"))
    assert sandbox.run_code("sum(default_ctx_value)").text == "6"
    assert sandbox.run_code("sum(default_ctx_value)", language="python").text == "6"


def test_contexts_are_independent(sandbox, ctx):
    other = sandbox.create_code_context()
    try:
        ok(sandbox.run_code("only_here = 41", context=ctx))
        missing = sandbox.run_code("only_here", context=other)
        assert missing.error is not None and missing.error.name == "NameError", missing.error
        assert "only_here" in missing.error.value
        # the same name, two values
        ok(sandbox.run_code("only_here = 'other'", context=other))
        assert sandbox.run_code("only_here + 1", context=ctx).text == "42"
        assert sandbox.run_code("only_here", context=other).text == "other"
        # and the default context sees neither
        err = sandbox.run_code("only_here").error
        assert err is not None and err.name == "NameError"
    finally:
        sandbox.remove_code_context(other)


def test_execution_count_per_context(sandbox, ctx):
    counts = [sandbox.run_code(code, context=ctx).execution_count for code in ("1", "x = 2", "1/0", "x")]
    assert counts == [1, 2, 3, 4], counts  # an error counts too
    # per-run environment variables are set up without taking a number
    assert sandbox.run_code("5", context=ctx, envs={"COUNT_ENV": "1"}).execution_count == 5
    fresh = sandbox.create_code_context()
    try:
        assert sandbox.run_code("'first'", context=fresh).execution_count == 1
        assert sandbox.run_code("'second'", context=fresh).execution_count == 2
        assert sandbox.run_code("6", context=ctx).execution_count == 6  # ctx's counter is its own
    finally:
        sandbox.remove_code_context(fresh)


def test_execution_count_is_the_kernels_own(sandbox, ctx):
    """The count reported is the one the kernel gave the cell (In [n]), whatever happened before:
    syntax errors, a kernel death and restart, and code that sets the counter itself."""
    # IPython has counted the cell by the time its code runs: In [n] sees execution_count n + 1
    own = "get_ipython().execution_count - 1"
    for code in ("1", "def broken(:", "1/0", "get_ipython().execution_count = 40", "%reset -f", "'plain'"):
        execution = sandbox.run_code(code + "\n", context=ctx)
        check = ok(sandbox.run_code(own, context=ctx))
        assert check.execution_count == int(check.text), (code, check.execution_count, check.text)
        if "execution_count" not in code:
            assert execution.execution_count == check.execution_count - 1, (code, execution.execution_count)
    sandbox.run_code("import os; os._exit(1)", context=ctx, timeout=30)
    assert sandbox.run_code("'again'", context=ctx, timeout=60).execution_count == 1


def test_output_written_to_the_fds_directly_is_captured(sandbox, ctx):
    """Output that bypasses sys.stdout (os.write on fd 1 and 2, as C code does) reaches the run it
    was written in, up to the run's last line."""
    for i in range(20):
        execution = ok(sandbox.run_code(f"import os\nos.write(1, b'out{i}\\n')\nos.write(2, b'err{i}\\n')",
                                        context=ctx))
        assert "".join(execution.logs.stdout) == f"out{i}\n", (i, execution.logs)
        assert "".join(execution.logs.stderr) == f"err{i}\n", (i, execution.logs)


# ---- stdout / stderr ----------------------------------------------------------------------------


def test_logs_collect_stdout_and_stderr(sandbox, ctx):
    execution = ok(sandbox.run_code(
        "import sys\nprint('out one')\nprint('err one', file=sys.stderr)\nprint('out two')", context=ctx))
    assert stdout(execution) == "out one\nout two\n"
    assert stderr(execution) == "err one\n"
    assert all(isinstance(line, str) for line in execution.logs.stdout + execution.logs.stderr)
    assert execution.results == []  # print is not a result
    assert execution.text is None


def test_callbacks_receive_output_messages_in_order(sandbox, ctx):
    events = []
    execution = ok(sandbox.run_code(
        "import sys\n"
        "print('a', flush=True)\n"
        "display(1)\n"
        "print('b', flush=True)\n"
        "print('c', file=sys.stderr, flush=True)\n"
        "2",
        context=ctx,
        on_stdout=lambda m: events.append(("stdout", m)),
        on_stderr=lambda m: events.append(("stderr", m)),
        on_result=lambda r: events.append(("result", r)),
    ))
    kinds = [kind for kind, _ in events]
    assert kinds == ["stdout", "result", "stdout", "stderr", "result"], events
    for kind, msg in events:
        if kind == "result":
            assert isinstance(msg, Result)
            continue
        assert isinstance(msg, OutputMessage)
        assert msg.error is (kind == "stderr")
        assert msg.timestamp, "every output line carries a timestamp"
        assert str(msg) == msg.line
    assert [m.line for k, m in events if k != "result"] == ["a\n", "b\n", "c\n"]
    assert [r.text for k, r in events if k == "result"] == ["1", "2"]
    assert [r.is_main_result for k, r in events if k == "result"] == [False, True]
    assert execution.logs.stdout == ["a\n", "b\n"] and execution.logs.stderr == ["c\n"]


def test_stdout_is_streamed_while_the_code_runs(sandbox, ctx):
    """Each line reaches the client while the code runs: the code prints the next only once the
    client has seen the last (a file its callback writes), and gives up after 20 s."""
    seen = f"/tmp/{unique('seen-')}-"
    lines = []

    def on_stdout(m):
        lines.append(m.line)
        sandbox.files.write(f"{seen}{len(lines) - 1}", "")

    execution = ok(sandbox.run_code(
        "import os, time\n"
        "deadline = time.monotonic() + 20\n"
        "for i in range(5):\n"
        "    print(f'tick {i}', flush=True)\n"
        f"    while not os.path.exists(f'{seen}{{i}}'):\n"
        "        if time.monotonic() > deadline:\n"
        "            raise TimeoutError(f'tick {i} did not reach the client while the code ran')\n"
        "        time.sleep(0.02)",
        context=ctx, timeout=60, on_stdout=on_stdout,
    ))
    assert lines == [f"tick {i}\n" for i in range(5)], lines
    assert stdout(execution) == "".join(f"tick {i}\n" for i in range(5))


def test_large_output_arrives_intact(sandbox, ctx):
    execution = ok(sandbox.run_code(
        "blob = ''.join(chr(97 + i % 26) for i in range(300_000))\n"
        "for i in range(0, len(blob), 100_000):\n    print(blob[i:i + 100_000])\n"
        "len(blob)", context=ctx, timeout=60))
    expected = "".join(chr(97 + i % 26) for i in range(300_000))
    assert stdout(execution).replace("\n", "") == expected
    assert execution.text == "300000"


def test_output_that_looks_like_protocol_lines_is_just_text(sandbox, ctx):
    # the NDJSON stream must not be confused by what the user's code prints
    fake = '{"type":"end_of_execution"}\n{"type":"error","name":"Forged","value":"x","traceback":""}'
    execution = ok(sandbox.run_code(f"print({fake!r})\n'still here'", context=ctx))
    assert stdout(execution) == fake + "\n"
    assert execution.text == "still here"
    assert execution.error is None


def test_unicode_and_control_characters(sandbox, ctx):
    execution = ok(sandbox.run_code("print('héllo ✓ 日本 🚀')\nprint('nul\\x00byte')\n'ünï ✓'", context=ctx))
    assert stdout(execution) == "héllo ✓ 日本 🚀\nnul\x00byte\n"
    assert execution.text == "ünï ✓"
    # a lone surrogate cannot be UTF-8: the run still completes, the output is replaced, not lost
    execution = ok(sandbox.run_code("print('bad \\udcff end')\n7", context=ctx))
    assert "bad" in stdout(execution) and "end" in stdout(execution)
    assert execution.text == "7"


# ---- errors -------------------------------------------------------------------------------------


def test_runtime_error(sandbox, ctx):
    seen = []
    execution = sandbox.run_code("x = 10\ny = x / 0", context=ctx, on_error=seen.append)
    error = execution.error
    assert isinstance(error, ExecutionError)
    assert error.name == "ZeroDivisionError"
    assert error.value == "division by zero"
    trace = plain(error.traceback)
    assert "ZeroDivisionError" in trace and "y = x / 0" in trace, trace
    assert seen == [error]  # on_error got the same object, once
    assert execution.results == [] and execution.text is None
    # state written before the failing line survives, and the context keeps working
    assert ok(sandbox.run_code("x * 2", context=ctx)).text == "20"


def test_syntax_error(sandbox, ctx):
    seen = []
    execution = sandbox.run_code("def broken(:\n    pass", context=ctx, on_error=seen.append)
    assert execution.error is not None and execution.error.name == "SyntaxError", execution.error
    assert "broken" in plain(execution.error.traceback)
    assert len(seen) == 1
    assert ok(sandbox.run_code("'fine'", context=ctx)).text == "fine"


def test_output_before_an_error_is_kept(sandbox, ctx):
    execution = sandbox.run_code("print('before')\nraise ValueError('nope')\nprint('after')", context=ctx)
    assert stdout(execution) == "before\n"
    assert (execution.error.name, execution.error.value) == ("ValueError", "nope")


def test_exception_chaining_and_custom_exceptions(sandbox, ctx):
    execution = sandbox.run_code(
        "class AppError(Exception):\n    pass\n"
        "try:\n    {}['k']\nexcept KeyError as e:\n    raise AppError('wrapped') from e", context=ctx)
    assert execution.error.name == "AppError"
    assert execution.error.value == "wrapped"
    trace = plain(execution.error.traceback)
    assert "KeyError" in trace and "AppError" in trace


def test_sys_exit_and_input_do_not_break_the_context(sandbox, ctx):
    ok(sandbox.run_code("kept = 'yes'", context=ctx))
    execution = sandbox.run_code("import sys; sys.exit(3)", context=ctx, timeout=30)
    assert execution.error is not None and execution.error.name == "SystemExit"
    execution = sandbox.run_code("input('name? ')", context=ctx, timeout=30)  # no stdin: fails, no hang
    assert execution.error is not None and execution.error.name == "StdinNotImplementedError"
    assert ok(sandbox.run_code("kept", context=ctx)).text == "yes"


# ---- per-run environment variables --------------------------------------------------------------


def test_per_run_envs_are_scoped_to_the_run(sandbox, ctx):
    execution = ok(sandbox.run_code("import os\nos.environ.get('RUN_ONLY')", context=ctx, envs={"RUN_ONLY": "1"}))
    assert execution.text == "1"
    # subprocesses of that run see it too
    execution = ok(sandbox.run_code("!echo \"[$RUN_ONLY]\"", context=ctx, envs={"RUN_ONLY": "sub"}))
    assert stdout(execution).strip() == "[sub]"
    # gone afterwards
    execution = ok(sandbox.run_code("import os\nrepr(os.environ.get('RUN_ONLY'))", context=ctx))
    assert execution.text == "None"


def test_per_run_envs_restore_the_previous_value(sandbox, ctx):
    assert ok(sandbox.run_code("import os; os.environ['HOME']", context=ctx)).text == "/home/user"
    assert ok(sandbox.run_code("import os; os.environ['HOME']", context=ctx, envs={"HOME": "/elsewhere"})).text == "/elsewhere"
    assert ok(sandbox.run_code("import os; os.environ['HOME']", context=ctx)).text == "/home/user"
    # a value the code set itself before is restored the same way
    ok(sandbox.run_code("os.environ['MINE'] = 'before'", context=ctx))
    assert ok(sandbox.run_code("os.environ['MINE']", context=ctx, envs={"MINE": "during"})).text == "during"
    assert ok(sandbox.run_code("os.environ['MINE']", context=ctx)).text == "before"


@pytest.mark.parametrize("language, clear, check", [
    ("python", "%reset -f", "import os\nrepr(os.environ.get('LEAK'))"),
    ("javascript", "for (const k of Object.keys(globalThis)) delete globalThis[k]", "String(process.env.LEAK)"),
])
def test_per_run_envs_are_restored_after_the_run_clears_its_namespace(sandbox, language, clear, check):
    """The restore must not depend on anything the run could delete: a run that wipes its namespace
    still leaves no env var behind."""
    ctx = sandbox.create_code_context(language=language)
    ok(sandbox.run_code(clear, context=ctx, envs={"LEAK": "1"}, timeout=60))
    assert ok(sandbox.run_code(check, context=ctx, timeout=60)).text in ("None", "undefined")


def test_a_kernel_that_dies_while_run_envs_are_restored(sandbox, ctx):
    """The run arranges for the kernel to exit when its env var is removed afterwards: the run ends
    with an error instead of hanging the context, and the context starts afresh."""
    ok(sandbox.run_code("before = 1", context=ctx))
    execution = sandbox.run_code("import os\nos.unsetenv = lambda key: os._exit(3)", context=ctx,
                                 envs={"NEW_RUN_VAR": "1"}, timeout=60)
    assert execution.error is not None and "exit status 3" in execution.error.value, execution
    assert ok(sandbox.run_code("40 + 2", context=ctx, timeout=60)).text == "42"
    assert sandbox.run_code("before", context=ctx, timeout=60).error.name == "NameError"  # a fresh kernel
    # and while they are set: the same run with a variable that exists kills it on set-up instead
    ok(sandbox.run_code("import os\nos.putenv = lambda key, value: os._exit(4)", context=ctx))
    execution = sandbox.run_code("'never'", context=ctx, envs={"HOME": "/x"}, timeout=60)
    assert execution.error is not None and "exit status 4" in execution.error.value, execution
    assert not execution.results
    assert ok(sandbox.run_code("'again'", context=ctx, timeout=60)).text == "again"


def test_per_run_envs_in_the_default_context(sandbox):
    assert ok(sandbox.run_code("import os; os.environ.get('DEFAULT_RUN_ENV')", envs={"DEFAULT_RUN_ENV": "v"})).text == "v"
    assert ok(sandbox.run_code("import os; repr(os.environ.get('DEFAULT_RUN_ENV'))")).text == "None"


NASTY = "a'b\"c $(echo pwned) `id` \\ \n line2 ; %s %(x)s {} ''' \"\"\""


def test_per_run_env_values_are_not_code(sandbox, ctx):
    # values reach the run verbatim in python, in its shell escapes and in bash: nothing is evaluated
    execution = ok(sandbox.run_code("import os\nprint(os.environ['NASTY'], end='')", context=ctx, envs={"NASTY": NASTY}))
    assert stdout(execution) == NASTY
    execution = ok(sandbox.run_code('printf "%s" "$NASTY"', language="bash", envs={"NASTY": NASTY}))
    assert stdout(execution).rstrip("\n") == NASTY
    assert "pwned" not in stdout(sandbox.run_code('echo "[${NASTY-unset}]"', language="bash"))
    assert stdout(sandbox.run_code('echo "[${NASTY-unset}]"', language="bash")).strip() == "[unset]"


@pytest.mark.parametrize("name", ["A B", "A=B", "", "1A", "X;rm", "$(id)"])
def test_invalid_env_var_names_are_rejected(sandbox, name):
    with pytest.raises(SandboxException) as info:
        sandbox.run_code("1", envs={name: "1"})
    assert "400" in str(info.value), info.value
    assert ok(sandbox.run_code("'alive'")).text == "alive"


# ---- IPython: shell escapes and magics ------------------------------------------------------------


def test_shell_escapes(sandbox, ctx):
    assert stdout(ok(sandbox.run_code("!pwd", context=ctx))).strip() == "/home/user"
    listing = stdout(ok(sandbox.run_code("!ls /", context=ctx))).split()
    for entry in ("bin", "etc", "home", "tmp", "usr"):
        assert entry in listing, listing
    # the output of a shell escape can be captured into a variable
    ok(sandbox.run_code("files = !ls -a /home/user", context=ctx))
    assert ok(sandbox.run_code("'.' in files", context=ctx)).text == "True"
    # a failing command is output, not an error
    execution = ok(sandbox.run_code("!ls /definitely-not-here", context=ctx))
    assert "definitely-not-here" in stdout(execution) + stderr(execution)


def test_magics(sandbox, ctx):
    assert ok(sandbox.run_code("%pwd", context=ctx)).text == "/home/user"
    execution = ok(sandbox.run_code("%timeit -n 3 -r 2 sum(range(100))", context=ctx))
    assert "per loop" in stdout(execution), execution.logs
    execution = ok(sandbox.run_code("%%bash\necho from-cell-magic $((6 * 7))", context=ctx))
    assert stdout(execution).strip() == "from-cell-magic 42"
    ok(sandbox.run_code("%cd /tmp", context=ctx))
    assert ok(sandbox.run_code("import os; os.getcwd()", context=ctx)).text == "/tmp"


# ---- languages ----------------------------------------------------------------------------------


def test_bash_language_keeps_state(sandbox):
    ok(sandbox.run_code("BASH_STATE=hello; cd /tmp", language="bash"))
    execution = ok(sandbox.run_code("echo \"$BASH_STATE from $(pwd)\"", language="bash"))
    assert stdout(execution).strip() == "hello from /tmp"
    first = sandbox.run_code("true", language="bash").execution_count
    assert sandbox.run_code("true", language="bash").execution_count == first + 1
    # bash state is not python state
    assert sandbox.run_code("BASH_STATE").error.name == "NameError"


def test_bash_errors_are_output(sandbox):
    execution = sandbox.run_code("echo to-stderr >&2; ls /nope-nope", language="bash")
    assert "to-stderr" in stdout(execution) + stderr(execution)
    assert "nope-nope" in stdout(execution) + stderr(execution)
    assert stdout(ok(sandbox.run_code("echo ok", language="bash"))).strip() == "ok"


def test_javascript_language(sandbox):
    ok(sandbox.run_code("const jsValue = 20 + 1", language="javascript"))
    assert ok(sandbox.run_code("jsValue * 2", language="js")).text == "42"
    assert stdout(ok(sandbox.run_code("console.log('from node')", language="javascript"))).strip() == "from node"


def test_typescript_language(sandbox):
    assert ok(sandbox.run_code("const n: number = 6; n * 7", language="typescript")).text == "42"


def test_the_templates_data_stack_works_in_a_kernel(sandbox, ctx):
    execution = ok(sandbox.run_code(
        "import json, numpy, pandas, matplotlib, scipy, sklearn, PIL, requests\n"
        "import scipy.stats, sklearn.linear_model, PIL.Image, matplotlib.pyplot\n"
        "x = numpy.arange(6).reshape(2, 3)\n"
        "fit = sklearn.linear_model.LinearRegression().fit([[0], [1], [2]], [1, 3, 5])\n"
        "json.dumps({'sum': int(x.sum()), 'frame': list(pandas.DataFrame(x).shape),\n"
        "            'cdf': float(scipy.stats.norm.cdf(0)), 'slope': round(float(fit.coef_[0]), 6),\n"
        "            'image': list(PIL.Image.new('RGB', (3, 2)).size), 'session': type(requests.Session()).__name__,\n"
        "            'versions': {m.__name__: m.__version__ for m in (numpy, pandas, matplotlib, scipy, sklearn, PIL,\n"
        "                                                             requests)}})",
        context=ctx, timeout=180))
    got = json.loads(execution.text)
    assert {k: v for k, v in got.items() if k != "versions"} == {
        "sum": 15, "frame": [2, 3], "cdf": 0.5, "slope": 2.0, "image": [3, 2], "session": "Session"}
    assert set(got["versions"]) == {"numpy", "pandas", "matplotlib", "scipy", "sklearn", "PIL", "requests"}
    assert all(isinstance(v, str) and v[0].isdigit() for v in got["versions"].values()), got["versions"]


@pytest.mark.parametrize("language", ["cobol", "Python2", "../python"])
def test_unknown_language(sandbox, language):
    with pytest.raises(SandboxException) as info:
        sandbox.run_code("1", language=language)
    message = str(info.value)
    assert "400" in message and language.lower() in message.lower(), message
    assert not isinstance(info.value, NotFoundException)


def test_language_and_context_together_is_rejected_client_side(sandbox, ctx):
    with pytest.raises(InvalidArgumentException):
        sandbox.run_code("1", language="python", context=ctx)


def test_unknown_context_id(sandbox):
    ghost = Context(context_id="0" * 32, language="python", cwd="/home/user")
    with pytest.raises(NotFoundException):
        sandbox.run_code("1", context=ghost)


# ---- concurrency --------------------------------------------------------------------------------


def test_contexts_run_in_parallel(sandbox, ctx):
    """Each run notes when it started and ended on the sandbox's clock: the two overlap. (Timing the
    pair from outside counted the requests too, which under CI's load used up the margin.)"""
    other = sandbox.create_code_context()
    try:
        results = {}

        def run(context, key):
            results[key] = sandbox.run_code("import time\nstarted = time.time()\ntime.sleep(1.5)\n"
                                            "[started, time.time()]", context=context, timeout=30).text

        threads = [threading.Thread(target=run, args=(c, i)) for i, c in enumerate((ctx, other))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert set(results) == {0, 1}, results
        spans = [json.loads(text) for text in results.values()]
        assert max(s for s, _ in spans) < min(e for _, e in spans), f"the runs did not overlap: {spans}"
    finally:
        sandbox.remove_code_context(other)


def test_runs_in_one_context_are_serialised_in_order(sandbox, ctx):
    out = {}

    def first():
        out["first"] = sandbox.run_code("import time\nshared = 1\ntime.sleep(1)\nshared", context=ctx, timeout=30)

    def second():
        out["second"] = sandbox.run_code("shared + 1", context=ctx, timeout=30)

    t1 = threading.Thread(target=first)
    t1.start()
    time.sleep(0.3)
    t2 = threading.Thread(target=second)
    t2.start()
    t1.join(30)
    t2.join(30)
    assert ok(out["first"]).text == "1"
    assert ok(out["second"]).text == "2"  # ran after the first, saw its state
    assert out["second"].execution_count == out["first"].execution_count + 1
