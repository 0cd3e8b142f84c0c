"""The code interpreter through the native SDK: `run_code()` and code contexts, on both surfaces.

Sandboxes come from the `code-interpreter` template (Jupyter kernels: IPython, bash_kernel, with
matplotlib and pandas); one test checks what a `base` sandbox answers.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sandlot import (
    CodeContext, Execution, ExecutionError, InvalidArgument, NotFound, OutputMessage, Result, SandboxNotRunning,
    SandlotError, TimeoutError,
)
from sandlot.client._code import _Run
from sdk_support import maybe

TEMPLATE = "code-interpreter"


@pytest.fixture
async def ci(sdk):
    """A code-interpreter sandbox on the surface under test, killed afterwards."""
    cls, conn = sdk
    sbx = await maybe(cls.create(template=TEMPLATE, **conn))
    yield sbx
    await maybe(sbx.kill())
    await maybe(sbx.close())


def recorder(surface: str, into: list):
    """A callback appending (time, value): a plain function on the blocking surface, a coroutine
    function on the async one (both kinds are accepted there)."""
    if surface == "sync":
        return lambda value: into.append((time.monotonic(), value))

    async def record(value):
        into.append((time.monotonic(), value))
    return record


async def test_state_persists_between_runs(ci):
    first = await maybe(ci.run_code("x = 40\ndef inc(v):\n    return v + 1"))
    assert isinstance(first, Execution) and first.error is None and first.results == [] and first.text is None
    execution = await maybe(ci.run_code("x = inc(x)\ninc(x)"))
    assert execution.text == "42" and execution.error is None
    [result] = execution.results
    assert isinstance(result, Result) and result.is_main_result and result.formats() == ["text"]


async def test_contexts_are_independent(ci):
    await maybe(ci.run_code("shared = 'default'"))
    ctx = await maybe(ci.create_code_context())
    assert isinstance(ctx, CodeContext) and ctx.language == "python" and ctx.cwd == "/home/user"
    missing = await maybe(ci.run_code("shared", context=ctx))
    assert missing.error is not None and missing.error.name == "NameError"
    await maybe(ci.run_code("shared = 'mine'", context=ctx))
    assert (await maybe(ci.run_code("shared", context=ctx.id))).text == "mine"  # an id works as well
    assert (await maybe(ci.run_code("shared"))).text == "default"
    listed = await maybe(ci.list_code_contexts())
    assert ctx in listed and listed[-1] == ctx  # creation order
    assert all(isinstance(c, CodeContext) for c in listed)


async def test_context_cwd(ci):
    ctx = await maybe(ci.create_code_context(cwd="/tmp"))
    assert ctx.cwd == "/tmp"
    assert (await maybe(ci.run_code("import os; os.getcwd()", context=ctx))).text == "/tmp"


async def test_execution_count_counts_per_context(ci):
    ctx = await maybe(ci.create_code_context())
    counts = [(await maybe(ci.run_code("1", context=ctx))).execution_count for _ in range(3)]
    assert counts == [1, 2, 3]
    other = await maybe(ci.create_code_context())
    assert (await maybe(ci.run_code("1", context=other))).execution_count == 1


async def test_output_streams_to_callbacks_before_the_end(ci, surface):
    out, err, results = [], [], []
    code = ("import sys, time\nprint('first', flush=True)\nprint('oops', file=sys.stderr, flush=True)\n"
            "time.sleep(1.5)\nprint('second')\n'done'")
    execution = await maybe(ci.run_code(code, on_stdout=recorder(surface, out), on_stderr=recorder(surface, err),
                                        on_result=recorder(surface, results)))
    ended = time.monotonic()
    assert "".join(execution.logs.stdout) == "first\nsecond\n" and "".join(execution.logs.stderr) == "oops\n"
    assert [m.line for _, m in out] == execution.logs.stdout and [m.line for _, m in err] == execution.logs.stderr
    assert all(isinstance(m, OutputMessage) and not m.error and m.timestamp for _, m in out)
    assert all(isinstance(m, OutputMessage) and m.error for _, m in err)
    assert str(out[0][1]) == "first\n"
    # streamed: the first line reached us while the code still slept
    assert ended - out[0][0] > 1.0 and ended - err[0][0] > 1.0
    assert [r for _, r in results] == execution.results and execution.text == "done"


async def test_error_has_a_traceback_and_reaches_on_error(ci, surface):
    errors = []
    code = "print('before')\ndef f():\n    raise ValueError('boom')\nf()\nprint('after')"
    execution = await maybe(ci.run_code(code, on_error=recorder(surface, errors)))
    error = execution.error
    assert isinstance(error, ExecutionError)
    assert (error.name, error.value) == ("ValueError", "boom")
    assert "ValueError" in error.traceback and "f()" in error.traceback
    assert [e for _, e in errors] == [error]
    assert execution.logs.stdout == ["before\n"] and execution.results == []
    # the context survives its errors
    assert (await maybe(ci.run_code("6 * 7"))).text == "42"


async def test_matplotlib_figures_come_as_png_and_chart(ci):
    line = await maybe(ci.run_code(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9], label='sq')\n"
        "plt.plot([1, 2], [2, 1], label='down')\nplt.title('squares'); plt.xlabel('n'); plt.ylabel('n squared')\n"
        "plt.show()", timeout=120))
    assert line.error is None, line.error
    [fig] = line.results
    assert not fig.is_main_result and fig.png and {"png", "chart"} <= set(fig.formats())
    assert fig.png.startswith("iVBORw0KGgo")  # base64 of the PNG signature
    chart = fig.chart
    assert isinstance(chart, dict) and (chart["type"], chart["title"]) == ("line", "squares")
    assert (chart["x_label"], chart["y_label"]) == ("n", "n squared")
    assert (chart["x_scale"], chart["y_scale"]) == ("linear", "linear")
    assert [(e["label"], e["points"]) for e in chart["elements"]] == [
        ("sq", [[1, 1], [2, 4], [3, 9]]), ("down", [[1, 2], [2, 1]])]
    bar = await maybe(ci.run_code(
        "fig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])\nax.set_title('bars')\n"
        "ax.set_xlabel('letter'); ax.set_ylabel('count')\nplt.show()"))
    assert bar.error is None and bar.results[0].png
    chart = bar.results[0].chart
    assert (chart["type"], chart["title"], chart["x_label"], chart["y_label"]) == ("bar", "bars", "letter", "count")
    assert [(e["label"], e["value"]) for e in chart["elements"]] == [("a", 3), ("b", 5)]
    assert all(isinstance(e["group"], str) for e in chart["elements"])


async def test_scatter_pie_box_and_log_charts(ci):
    await maybe(ci.run_code("import matplotlib.pyplot as plt", timeout=120))

    async def chart(code: str) -> dict:
        execution = await maybe(ci.run_code(code + "\nplt.show()"))
        assert execution.error is None, execution.error
        [result] = execution.results
        assert result.png and isinstance(result.chart, dict), result.formats()
        return result.chart

    scatter = await chart("plt.figure()\nplt.scatter([1, 2, 3], [9, 4, 1], label='pts')\n"
                          "plt.scatter([5], [5], label='one')\nplt.xlabel('width'); plt.ylabel('height')")
    assert (scatter["type"], scatter["x_label"], scatter["y_label"]) == ("scatter", "width", "height")
    assert [(e["label"], e["points"]) for e in scatter["elements"]] == [
        ("pts", [[1, 9], [2, 4], [3, 1]]), ("one", [[5, 5]])]

    pie = await chart("plt.figure()\nplt.pie([1, 2, 3], labels=['p', 'q', 'r'])\nplt.title('Pie')")
    assert (pie["type"], pie["title"]) == ("pie", "Pie")
    assert [(e["label"], round(e["angle"], 3), e["radius"]) for e in pie["elements"]] == [
        ("p", 60, 1), ("q", 120, 1), ("r", 180, 1)]

    box = await chart("fig, ax = plt.subplots()\n"
                      "ax.boxplot([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7, 40]], tick_labels=['g', 'h'],\n"
                      "           patch_artist=True)\n"
                      "ax.set_title('Box'); ax.set_xlabel('group'); ax.set_ylabel('value')")
    assert (box["type"], box["title"], box["x_label"], box["y_label"]) == ("box_and_whisker", "Box", "group", "value")
    g, h = box["elements"]
    assert [g[k] for k in ("label", "min", "first_quartile", "median", "third_quartile", "max", "outliers")] == [
        "g", 1, 2, 3, 4, 5, []]
    assert [h[k] for k in ("label", "min", "median", "max", "outliers")] == ["h", 2, 5, 7, [40]]

    log = await chart("plt.figure()\nplt.plot([1, 10, 100], [1, 100, 10000])\nplt.xscale('log'); plt.yscale('log')")
    assert (log["type"], log["x_scale"], log["y_scale"]) == ("line", "log", "log")
    assert log["elements"][0]["points"] == [[1, 1], [10, 100], [100, 10000]]


async def test_dataframe_comes_as_data(ci):
    execution = await maybe(ci.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})"))
    assert execution.error is None, execution.error
    [result] = execution.results
    assert result.is_main_result and result.data == {"a": [1, 2], "b": ["x", "y"]}
    assert result.html and "<table" in result.html and "data" in result.formats()


async def test_a_latex_only_display(ci):
    execution = await maybe(ci.run_code(
        "from IPython.display import display\ndisplay({'text/latex': r'$\\frac{1}{2}$'}, raw=True)"))
    assert execution.error is None, execution.error
    [result] = execution.results
    assert result.latex == r"$\frac{1}{2}$" and result.text is None and not result.is_main_result
    assert result.formats() == ["latex"] and result.extra == {}
    assert execution.text is None
    assert "latex" in repr(result)


async def test_other_mime_types_land_in_extra(ci):
    execution = await maybe(ci.run_code(
        "from IPython.display import display\ndisplay({'text/plain': 'p', 'application/x-sandlot': 'z'}, raw=True)"))
    [result] = execution.results
    assert result.text == "p" and result.extra == {"application/x-sandlot": "z"}
    assert result.formats() == ["text", "application/x-sandlot"]


async def test_timeout_interrupts_the_run_and_keeps_the_state(ci):
    await maybe(ci.run_code("kept = 'yes'"))
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        await maybe(ci.run_code("import time\nprint('started', flush=True)\ntime.sleep(60)", timeout=2))
    elapsed = time.monotonic() - started
    # not before its 2 s, and far short of the 60 s it wanted: the rest of the bound is for the
    # interrupt and the reply on a loaded CI host (3.5 s was once all of it)
    assert 1.9 < elapsed < 15, elapsed
    assert caught.value.details["execution"].logs.stdout == ["started\n"]  # what ran before the deadline
    started = time.monotonic()
    assert (await maybe(ci.run_code("kept"))).text == "yes"  # the kernel was interrupted, not restarted
    assert time.monotonic() - started < 15  # not queued behind the rest of the 60 s sleep


async def test_a_run_within_its_timeout_is_not_affected(ci):
    execution = await maybe(ci.run_code("import time\ntime.sleep(0.5)\n'ok'", timeout=3))
    assert execution.text == "ok" and execution.error is None


async def test_timeout_zero_means_no_limit(ci):
    assert (await maybe(ci.run_code("import time\ntime.sleep(0.2)\n1", timeout=0))).text == "1"
    with pytest.raises(InvalidArgument):
        await maybe(ci.run_code("1", timeout=-1))


async def test_cancelling_a_run_interrupts_it(server):
    from sandlot import AsyncSandbox
    async with await AsyncSandbox.create(template=TEMPLATE, api_url=server.url, api_key=server.api_key) as sbx:
        await sbx.run_code("kept = 1")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sbx.run_code("import time\ntime.sleep(60)"), 1)
        started = time.monotonic()
        assert (await sbx.run_code("kept + 1")).text == "2"
        assert time.monotonic() - started < 15  # not queued behind the rest of the 60 s sleep


async def test_run_envs_apply_to_one_run_only(ci):
    await maybe(ci.run_code("import os\nos.environ['SL_KEEP'] = 'before'"))
    during = await maybe(ci.run_code("os.environ.get('SL_RUN'), os.environ['SL_KEEP']",
                                     envs={"SL_RUN": "1", "SL_KEEP": "during"}))
    assert during.text == "('1', 'during')"
    after = await maybe(ci.run_code("os.environ.get('SL_RUN'), os.environ['SL_KEEP']"))
    assert after.text == "(None, 'before')"


async def test_sandbox_envs_reach_every_context(sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(template=TEMPLATE, envs={"SL_WIDE": "w1"}, **conn))
    try:
        assert (await maybe(sbx.run_code("import os; os.environ.get('SL_WIDE')"))).text == "w1"
        ctx = await maybe(sbx.create_code_context(envs={"SL_CTX": "c1"}))
        assert (await maybe(sbx.run_code("import os; os.environ.get('SL_WIDE'), os.environ.get('SL_CTX')",
                                         context=ctx))).text == "('w1', 'c1')"
        bash = await maybe(sbx.run_code("echo $SL_WIDE", language="bash"))
        assert bash.logs.stdout == ["w1\n"]
    finally:
        await maybe(sbx.kill())
        await maybe(sbx.close())


async def test_shell_escape_runs_in_home(ci):
    execution = await maybe(ci.run_code("!pwd"))
    assert "".join(execution.logs.stdout).splitlines() == ["/home/user"]  # IPython runs it on a pty: \r\n


async def test_bash_contexts(ci):
    ctx = await maybe(ci.create_code_context("bash"))
    assert ctx.language == "bash"
    await maybe(ci.run_code("N=6", context=ctx))
    execution = await maybe(ci.run_code("echo $((N * 7)); pwd", context=ctx))
    assert "".join(execution.logs.stdout) == "42\n/home/user\n" and execution.error is None
    # language="bash" is the default bash context: another state
    assert "".join((await maybe(ci.run_code("echo N=$N", language="bash"))).logs.stdout) == "N=\n"
    assert "".join((await maybe(ci.run_code("echo hi", language="sh"))).logs.stdout) == "hi\n"


async def test_javascript_and_typescript(ci):
    await maybe(ci.run_code("const base = 20 + 1", language="javascript"))
    execution = await maybe(ci.run_code("console.log('from node'); base * 2", language="js"))
    assert (execution.text, execution.logs.stdout, execution.error) == ("42", ["from node\n"], None)
    ctx = await maybe(ci.create_code_context("javascript", cwd="/tmp", variables={"seed": [1, 2]}))
    assert (ctx.language, ctx.cwd) == ("javascript", "/tmp")
    assert ctx in await maybe(ci.list_code_contexts())
    execution = await maybe(ci.run_code("process.cwd() + ' ' + seed.length + ' ' + typeof base", context=ctx))
    assert execution.text == "/tmp 2 undefined"  # its own node: the default javascript context's state is not here
    failed = await maybe(ci.run_code("null.x", context=ctx))
    assert failed.error is not None and failed.error.name == "TypeError"
    ts = await maybe(ci.create_code_context("typescript"))
    assert ts.language == "typescript"
    assert (await maybe(ci.run_code("const n: number = 6; n * 7", context=ts))).text == "42"


@pytest.mark.parametrize(("language", "sleep", "check", "unset"), [
    ("python", "import time; time.sleep(30)", "import os; repr(os.environ.get('SL_TMO'))", "None"),
    ("javascript", "await new Promise((r) => setTimeout(r, 30000))", "String(process.env.SL_TMO)", "undefined"),
])
async def test_run_envs_are_restored_after_a_timeout(ci, language, sleep, check, unset):
    ctx = await maybe(ci.create_code_context(language))
    with pytest.raises(TimeoutError):
        await maybe(ci.run_code(sleep, context=ctx, envs={"SL_TMO": "1"}, timeout=1))
    after = await maybe(ci.run_code(check, context=ctx, timeout=15))
    assert (after.error, after.text) == (None, unset)


async def test_a_memory_bomb_kills_only_its_kernel(sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(template=TEMPLATE, limits={"memory_mb": 384}, **conn))
    try:
        other = await maybe(sbx.create_code_context())
        await maybe(sbx.run_code("kept = 'other'", context=other))
        await maybe(sbx.run_code("default_kept = 'default'"))
        bomb = await maybe(sbx.create_code_context())
        await maybe(sbx.run_code("before = 1", context=bomb))
        started = time.monotonic()
        execution = await maybe(sbx.run_code("x = []\nwhile True:\n    x.append(bytearray(1 << 26))",
                                             context=bomb, timeout=120))
        assert time.monotonic() - started < 60
        error = execution.error
        assert error is not None and error.name in ("KernelDied", "MemoryError"), error
        if error.name == "KernelDied":  # the cgroup's OOM killer took the kernel (its first choice)
            assert "signal 9" in error.value, error.value
        # the other contexts kept their state; the bombed one works again (afresh if its kernel died)
        assert (await maybe(sbx.run_code("kept", context=other))).text == "other"
        assert (await maybe(sbx.run_code("default_kept"))).text == "default"
        again = await maybe(sbx.run_code("del x\n6 * 7" if error.name == "MemoryError" else "6 * 7", context=bomb))
        assert (again.error, again.text) == (None, "42")
        # the sandbox and the server answer
        assert (await maybe(sbx.commands.run("echo alive"))).stdout == "alive\n"
        info = await maybe(sbx.get_info())
        assert (info.state, info.memory_mb) == ("running", 384)
    finally:
        await maybe(sbx.kill())
        await maybe(sbx.close())


async def test_variables_are_injected_into_a_new_context(ci):
    ctx = await maybe(ci.create_code_context(variables={"x": 41, "cfg": {"names": ["a", "b"], "on": True},
                                                        "nothing": None}))
    execution = await maybe(ci.run_code("x + 1, cfg['names'], cfg['on'], nothing", context=ctx))
    assert execution.text == "(42, ['a', 'b'], True, None)"
    # only there
    assert (await maybe(ci.run_code("x"))).error.name == "NameError"
    with pytest.raises(InvalidArgument):
        await maybe(ci.create_code_context(variables={"f": object()}))  # not JSON
    with pytest.raises(InvalidArgument):
        await maybe(ci.create_code_context(variables={"not a name": 1}))


@pytest.mark.parametrize("language, read, expected", [
    ("bash", 'echo "$word|$n|$cfg"', 'hi there|7|{"a": [1, 2]}'),
    ("typescript", "const got: string = `${word}|${n}|${cfg.a.length}`; got", "hi there|7|2"),
])
async def test_variables_in_bash_and_typescript_contexts(ci, language, read, expected):
    """bash gets strings (JSON for what is not one), typescript the JSON values."""
    ctx = await maybe(ci.create_code_context(language, variables={"word": "hi there", "n": 7, "cfg": {"a": [1, 2]}}))
    execution = await maybe(ci.run_code(read, context=ctx, timeout=60))
    assert execution.error is None, execution.error
    assert (execution.text or "".join(execution.logs.stdout)).strip().strip("'") == expected


async def test_variables_come_back_after_a_restart_and_a_kernel_death(ci):
    ctx = await maybe(ci.create_code_context(variables={"seed": 41}))
    await maybe(ci.run_code("seed = 0\nextra = 1", context=ctx))
    await maybe(ci.restart_code_context(ctx))
    assert (await maybe(ci.run_code("seed + 1", context=ctx))).text == "42"
    assert (await maybe(ci.run_code("import os; os._exit(1)", context=ctx))).error.name == "KernelDied"
    assert (await maybe(ci.run_code("seed + 1, 'extra' in dir()", context=ctx, timeout=60))).text == "(42, False)"


async def test_restart_clears_the_state(ci):
    ctx = await maybe(ci.create_code_context())
    await maybe(ci.run_code("gone = 1", context=ctx))
    assert await maybe(ci.restart_code_context(ctx)) is None
    after = await maybe(ci.run_code("gone", context=ctx))
    assert after.error is not None and after.error.name == "NameError"
    assert ctx.id in [c.id for c in await maybe(ci.list_code_contexts())]
    await maybe(ci.run_code("again = 2", context=ctx.id))
    await maybe(ci.restart_code_context(ctx.id))
    assert (await maybe(ci.run_code("'again' in dir()", context=ctx))).text == "False"


async def test_removed_context_is_gone(ci):
    ctx = await maybe(ci.create_code_context())
    assert await maybe(ci.remove_code_context(ctx)) is None
    assert ctx.id not in [c.id for c in await maybe(ci.list_code_contexts())]
    with pytest.raises(NotFound):
        await maybe(ci.run_code("1", context=ctx))
    with pytest.raises(NotFound):
        await maybe(ci.remove_code_context(ctx.id))


async def test_unknown_context_is_not_found(ci):
    with pytest.raises(NotFound):
        await maybe(ci.run_code("1", context="nosuchcontext"))
    with pytest.raises(NotFound):
        await maybe(ci.restart_code_context("nosuchcontext"))
    with pytest.raises(NotFound):
        await maybe(ci.remove_code_context("nosuchcontext"))


async def test_bad_arguments(ci):
    with pytest.raises(InvalidArgument):
        await maybe(ci.run_code("1", language="cobol"))
    with pytest.raises(InvalidArgument):
        await maybe(ci.create_code_context("cobol"))
    ctx = await maybe(ci.create_code_context())
    with pytest.raises(InvalidArgument):
        await maybe(ci.run_code("1", language="python", context=ctx))
    with pytest.raises(InvalidArgument):
        await maybe(ci.run_code("1", context=42))


async def test_a_base_sandbox_has_no_code_interpreter(sandbox):
    with pytest.raises(NotFound) as caught:
        await maybe(sandbox.run_code("1"))
    assert "code-interpreter" in str(caught.value)
    with pytest.raises(NotFound, match="code-interpreter"):
        await maybe(sandbox.create_code_context())
    with pytest.raises(NotFound, match="code-interpreter"):
        await maybe(sandbox.list_code_contexts())


async def _run_then_kill(sdk, surface, *, envs=None, wait_for_output: bool):
    """Start a long run, kill the sandbox under it; return what the run raised."""
    cls, conn = sdk
    sbx = await maybe(cls.create(template=TEMPLATE, envs=envs, **conn))
    started = threading.Event()
    try:
        code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
        on_stdout = lambda m: started.set()  # a plain function: it runs on either surface
        run = (asyncio.ensure_future(asyncio.to_thread(sbx.run_code, code, on_stdout=on_stdout))
               if surface == "sync" else asyncio.ensure_future(sbx.run_code(code, on_stdout=on_stdout)))
        if wait_for_output:
            assert await asyncio.to_thread(started.wait, 60)
        else:
            await asyncio.sleep(0.2)
        assert not run.done()
        await maybe(sbx.kill())
        with pytest.raises(SandlotError) as caught:
            await asyncio.wait_for(run, 10)
        return caught.value
    finally:
        await maybe(sbx.kill())
        await maybe(sbx.close())


async def test_killing_the_sandbox_mid_run(sdk, surface):
    error = await _run_then_kill(sdk, surface, wait_for_output=True)
    assert isinstance(error, SandboxNotRunning), repr(error)


async def test_killing_the_sandbox_while_its_interpreter_starts(sdk, surface):
    # a sandbox with envs is never taken from the warm pool: its kernels are still starting
    error = await _run_then_kill(sdk, surface, envs={"A": "1"}, wait_for_output=False)
    assert isinstance(error, SandboxNotRunning), repr(error)


# --- no server: how stream lines become an Execution ---


async def _feed(lines: list[dict]) -> _Run:
    import json
    run = _Run(None, None, None, None)
    for line in lines:
        await run.feed(json.dumps(line))
    return run


async def test_lines_a_newer_server_may_send_are_tolerated():
    run = await _feed([
        {"type": "number_of_executions", "execution_count": 3},
        {"type": "something_new", "payload": [1]},
        {"type": "keepalive"},
        {"type": "result", "text": "1", "is_main_result": True, "new_format": "?", "extra": {}},
        {"type": "stdout", "text": "a", "timestamp": 1_700_000_000_000_000_000, "another": 1},
        {"type": "error", "name": "E", "value": "v", "traceback": "tb", "more": True},
        {"type": "end_of_execution"},
    ])
    execution = run.execution()
    assert run.ended and execution.execution_count == 3 and execution.text == "1"
    assert execution.results == [Result(text="1", is_main_result=True)]
    assert execution.logs.stdout == ["a"] and execution.error == ExecutionError("E", "v", "tb")


def test_result_formats_and_repr():
    r = Result(png="iVBOR", chart={"type": "line"}, extra={"application/x": 1})
    assert r.formats() == ["png", "chart", "application/x"]
    assert repr(r) == "Result(formats: png, chart, application/x)"
    assert Result.from_json({"type": "result", "latex": "$x$", "extra": None}).formats() == ["latex"]
