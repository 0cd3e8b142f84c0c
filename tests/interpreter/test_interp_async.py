"""The same API through `AsyncSandbox`: each test makes (and kills) its own sandbox, so no async
fixture has to share an event loop with another test."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import pytest
from e2b_code_interpreter import (
    AsyncSandbox,
    NotFoundException,
    OutputMessage,
    TimeoutException,
)
from e2b_code_interpreter.charts import BarChart
from interp_support import ok, png_bytes, stdout


@asynccontextmanager
async def async_sandbox(**kwargs):
    kwargs.setdefault("timeout", 300)
    sbx = await AsyncSandbox.create(**kwargs)
    try:
        yield sbx
    finally:
        try:
            await sbx.kill()
        except Exception:  # noqa: BLE001, S110 - may be gone already
            pass


async def test_async_state_results_and_errors():
    async with async_sandbox() as sbx:
        ok(await sbx.run_code("x = 20"))
        execution = ok(await sbx.run_code("x + 22"))
        assert execution.text == "42" and execution.results[0].is_main_result
        errors = []
        execution = await sbx.run_code("1/0", on_error=errors.append)
        assert execution.error.name == "ZeroDivisionError" and errors == [execution.error]
        assert ok(await sbx.run_code("x")).text == "20"


async def test_async_callbacks_stream():
    async with async_sandbox() as sbx:
        arrivals = []

        async def on_stdout(msg):  # async callbacks are awaited by the SDK
            assert isinstance(msg, OutputMessage)
            arrivals.append((time.monotonic(), msg.line))

        start = time.monotonic()
        execution = ok(await sbx.run_code(
            "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.4)",
            on_stdout=on_stdout, timeout=30))
        end = time.monotonic()
        assert [line for _, line in arrivals] == ["0\n", "1\n", "2\n", "3\n"]
        assert arrivals[0][0] - start < end - start - 0.8, (arrivals, start, end)
        assert stdout(execution) == "0\n1\n2\n3\n"


async def test_async_contexts():
    async with async_sandbox() as sbx:
        first = await sbx.create_code_context(cwd="/tmp")
        second = await sbx.create_code_context()
        ok(await sbx.run_code("only_first = 1", context=first))
        assert (await sbx.run_code("only_first", context=second)).error.name == "NameError"
        assert ok(await sbx.run_code("import os; os.getcwd()", context=first)).text == "/tmp"
        ids = [c.id for c in await sbx.list_code_contexts()]
        assert ids.index(first.id) < ids.index(second.id)
        await sbx.restart_code_context(first)
        assert (await sbx.run_code("only_first", context=first)).error.name == "NameError"
        await sbx.remove_code_context(second)
        with pytest.raises(NotFoundException):
            await sbx.run_code("1", context=second)


async def test_async_parallel_contexts():
    async with async_sandbox() as sbx:
        contexts = await asyncio.gather(*(sbx.create_code_context() for _ in range(3)))
        # each run notes when it started and ended on the sandbox's clock: all three overlap (timing
        # them from outside counted the requests too, which under CI's load used up the margin)
        executions = await asyncio.gather(*(
            sbx.run_code(f"import time\nstarted = time.time()\ntime.sleep(1.5)\n[{i}, started, time.time()]",
                         context=c, timeout=30) for i, c in enumerate(contexts)))
        runs = [json.loads(ok(e).text) for e in executions]
        assert [i for i, _, _ in runs] == [0, 1, 2]
        assert max(s for _, s, _ in runs) < min(e for _, _, e in runs), f"the runs did not overlap: {runs}"


async def test_async_chart_and_dataframe():
    async with async_sandbox() as sbx:
        execution = ok(await sbx.run_code(
            "import matplotlib.pyplot as plt\nplt.bar(['u', 'v'], [2, 5])\nplt.show()", timeout=120))
        result = execution.results[0]
        png_bytes(result.png)
        assert isinstance(result.chart, BarChart)
        assert [(e.label, e.value) for e in result.chart.elements] == [("u", 2), ("v", 5)]
        execution = ok(await sbx.run_code("import pandas as pd\npd.DataFrame({'q': [1, 2]})", timeout=120))
        assert execution.results[0].data == {"q": [1, 2]}


async def test_async_timeout_then_recovery():
    async with async_sandbox() as sbx:
        ok(await sbx.run_code("kept = 'k'"))
        start = time.monotonic()
        with pytest.raises(TimeoutException):
            await sbx.run_code("import time; time.sleep(30)", timeout=1)
        assert time.monotonic() - start < 6
        start = time.monotonic()
        assert ok(await sbx.run_code("kept", timeout=15)).text == "k"
        assert time.monotonic() - start < 5


async def test_async_kill_during_a_run():
    async with async_sandbox() as sbx:
        ok(await sbx.run_code("1"))

        async def kill_soon():
            await asyncio.sleep(1.5)
            await sbx.kill()

        killer = asyncio.create_task(kill_soon())
        start = time.monotonic()
        with pytest.raises(TimeoutException) as info:
            await sbx.run_code("import time; time.sleep(60)", timeout=45)
        await killer
        assert "killed" in str(info.value), info.value
        assert time.monotonic() - start < 15


async def test_async_kernel_death_and_languages():
    async with async_sandbox() as sbx:
        execution = await sbx.run_code("import os; os._exit(3)", timeout=30)
        assert execution.error.name == "KernelDied"
        assert ok(await sbx.run_code("'back'", timeout=60)).text == "back"
        ok(await sbx.run_code("V=from-bash", language="bash"))
        assert stdout(await sbx.run_code("echo $V", language="bash")).strip() == "from-bash"
        assert (await sbx.commands.run("true")).exit_code == 0
