"""Huge outputs against a server started with a small SANDLOT_MAX_OUTPUT_BYTES: what a run prints,
raises or displays past the limit is cut with a marker; the run completes, and the context (and
every other one of the sandbox) keeps its state."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import httpx
from interp_support import driver_pid, driver_stdout, jupyter_headers, ok, plain, stderr, stdout, wait_for_file, write_until
from support import access_token, leftovers, sdk_environment, start_server

LIMIT = 64 << 10  # far below a 1 MiB display, so every case here overflows the control plane's margin too
MARKER = f"[sandlot: output truncated: this run produced more than {LIMIT} bytes]"
CUT = f"characters cut: a run's output is limited to {LIMIT} bytes]"


@pytest.fixture(scope="module")
def small_server():
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-limit-"))
    srv = start_server(home, pool_size=1, extra_env={"SANDLOT_MAX_OUTPUT_BYTES": str(LIMIT)})
    yield srv
    srv.stop()
    left = leftovers(home)
    shutil.rmtree(home, ignore_errors=True)  # its templates/ is a link to the shared cache: only the link goes
    assert not left, f"the server left sandbox resources behind: {left}"


@pytest.fixture(scope="module")
def sdk_env(small_server):
    """Overrides conftest's: the SDK talks to the small-limit server."""
    with sdk_environment(small_server):
        yield small_server


def survives(sandbox, ctx):
    """The context's earlier state and the sandbox's default context are still there: the run did
    not take the interpreter down with it."""
    assert ok(sandbox.run_code("kept", context=ctx, timeout=30)).text == "yes"
    assert ok(sandbox.run_code("default_kept", timeout=30)).text == "also"


@pytest.fixture
def kept(sandbox, ctx):
    ok(sandbox.run_code("kept = 'yes'", context=ctx))
    ok(sandbox.run_code("default_kept = 'also'"))
    return ctx


def test_output_under_the_limit_is_intact(sandbox, kept):
    execution = ok(sandbox.run_code("print('a' * 30_000)\n'done'", context=kept))
    assert stdout(execution) == "a" * 30_000 + "\n"
    assert MARKER not in stderr(execution) and execution.text == "done"


def test_stdout_past_the_limit_is_cut_with_a_marker(sandbox, kept):
    started = time.monotonic()
    execution = ok(sandbox.run_code(
        "for i in range(40):\n    print(str(i % 10) * 10_000, flush=True)\nafter = 'ran to the end'\n'result'",
        context=kept, timeout=60))
    assert time.monotonic() - started < 20
    out = stdout(execution)
    assert 0 < len(out) <= LIMIT and out.startswith("0" * 10_000), len(out)
    assert stderr(execution).strip() == MARKER
    assert execution.results == []  # past the limit: dropped, results too
    # the run went on to its end, only its output was dropped
    assert ok(sandbox.run_code("after", context=kept)).text == "ran to the end"
    survives(sandbox, kept)


def test_huge_exception_is_cut(sandbox, kept):
    started = time.monotonic()
    execution = sandbox.run_code("raise ValueError('x' * (20 << 20))", context=kept, timeout=60)
    assert time.monotonic() - started < 30
    error = execution.error
    assert error is not None and error.name == "ValueError", error and (error.name, error.value[:300])
    assert len(error.value) + len(error.traceback) <= LIMIT
    assert error.value.startswith("x" * 1000) and CUT in error.value, error.value[-300:]
    trace = plain(error.traceback)
    assert CUT in trace and "ValueError" in trace and "raise ValueError" in trace, trace[:500]
    assert ok(sandbox.run_code("6 * 7", context=kept)).text == "42"
    survives(sandbox, kept)


def test_huge_exception_after_the_output_limit_is_still_reported(sandbox, kept):
    execution = sandbox.run_code("print('o' * (200 << 10))\nraise KeyError('k' * (1 << 20))", context=kept, timeout=60)
    assert stderr(execution).strip() == MARKER
    assert execution.error is not None and execution.error.name == "KeyError"
    assert CUT in execution.error.value and len(execution.error.value) <= LIMIT
    survives(sandbox, kept)


def test_huge_display_is_dropped_with_a_marker(sandbox, kept):
    execution = ok(sandbox.run_code(
        "from IPython.display import HTML, display\n"
        "display(HTML('<p>' + 'h' * (4 << 20) + '</p>'))\nshown = 'after the display'\n'main'",
        context=kept, timeout=60))
    assert execution.results == []  # a result is whole or not at all
    assert stderr(execution).strip() == MARKER
    assert ok(sandbox.run_code("shown", context=kept)).text == "after the display"
    # the next run has a limit of its own
    execution = ok(sandbox.run_code("display(HTML('<b>small</b>'))", context=kept))
    assert [r.html for r in execution.results] == ["<b>small</b>"]
    survives(sandbox, kept)


def test_huge_javascript_error_is_cut(sandbox, kept):
    ok(sandbox.run_code("globalThis.jsKept = 'js'", language="javascript", timeout=60))
    execution = sandbox.run_code("throw new Error('j'.repeat(20 << 20))", language="javascript", timeout=60)
    assert execution.error is not None and execution.error.name == "Error"
    assert CUT in execution.error.value and len(execution.error.value) <= LIMIT
    assert ok(sandbox.run_code("jsKept", language="javascript")).text == "js"
    survives(sandbox, kept)


def test_huge_javascript_output_is_cut(sandbox, kept):
    # one console.log larger than a line the driver reads from node (16 MiB): sent in pieces
    ok(sandbox.run_code("globalThis.jsKept = 'js'", language="javascript", timeout=60))
    execution = ok(sandbox.run_code("console.log('z'.repeat(24 << 20)); 'end'", language="javascript", timeout=120))
    assert 0 < len(stdout(execution)) <= LIMIT and set(stdout(execution)) == {"z"}
    assert stderr(execution).strip() == MARKER
    assert ok(sandbox.run_code("jsKept", language="javascript")).text == "js"
    survives(sandbox, kept)


def test_forged_output_on_the_interpreter_pipe_is_bounded(make_sandbox):
    """A driver taken over (played from the host: sandbox code cannot take the driver's stdout, see
    test_interp_lifecycle) writes protocol lines answering for the run in progress past the driver's
    own output limit. The control plane bounds what one request receives (twice the limit plus a
    margin) and stops the driver, so server memory stays bounded: the run ends with an error, and
    the next run gets a fresh interpreter."""
    sbx = make_sandbox()  # a fresh sandbox: its first run is request 1 of its interpreter session
    bound = 2 * LIMIT + (1 << 20)
    result = {}
    run = threading.Thread(target=lambda: result.update(execution=sbx.run_code(
        "open('/tmp/started', 'w').close()\nimport time\ntime.sleep(60)", timeout=90)))
    run.start()
    wait_for_file(sbx, "/tmp/started")
    lines = "".join(json.dumps({"id": rid, "line": {"type": "stdout", "text": "f" * 50_000}}) + "\n"
                    for rid in (1, 2, 3)).encode()
    fd = driver_stdout(sbx.sandbox_id)
    try:
        write_until(fd, lines * (2 * bound // 50_000), lambda: not run.is_alive())
    finally:
        os.close(fd)
    run.join(90)
    execution = result["execution"]
    received = sum(len(text) for text in execution.logs.stdout)
    assert 0 < received <= bound, received
    assert execution.error is not None and "stopped" in execution.error.value, execution.error
    assert ok(sbx.run_code("'fresh'", timeout=60)).text == "fresh"

def _forge(sbx, server, method: str, path: str, line: Callable[[int], bytes], hold: float = 30) -> httpx.Response:
    """`method path` answered by a driver taken over (played from the host, as above): the driver
    itself is stopped, and `line(rid)` written for the next request ids every 50 ms (a line for an
    id not yet asked answers nothing), until the request is answered or `hold` s have passed; then
    the driver goes on."""
    ok(sbx.run_code("1", timeout=60))  # the driver runs
    headers = jupyter_headers(sbx.sandbox_id, access_token(server, sbx.sandbox_id))
    answer = {}
    request = threading.Thread(target=lambda: answer.update(r=httpx.request(
        method, f"{server.url}{path}", json={} if method == "POST" else None, headers=headers, timeout=60)))
    pid, fd = driver_pid(sbx.sandbox_id), driver_stdout(sbx.sandbox_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        request.start()
        deadline = time.monotonic() + hold
        while request.is_alive() and time.monotonic() < deadline:
            write_until(fd, b"".join(line(rid) for rid in range(2, 12)), lambda: False)
            request.join(0.05)
    finally:
        os.close(fd)
        os.kill(pid, signal.SIGCONT)
    request.join(60)
    return answer["r"]


@pytest.mark.parametrize("method, path, forged", [
    ("POST", "/contexts", {"reply": {}}),
    ("POST", "/contexts", {"reply": {"context": ["not", "a", "context"]}}),
    ("GET", "/contexts", {"reply": {"contexts": {"id": "x"}}}),
])
def test_a_forged_answer_about_contexts_is_a_clear_error(make_sandbox, small_server, method, path, forged):
    """An answer to a context request with no context is a broken protocol (502), not a KeyError (500)."""
    r = _forge(make_sandbox(), small_server, method, path,
               lambda rid: (json.dumps({"id": rid, **forged}) + "\n").encode())
    assert r.status_code == 502, (r.status_code, r.text)


def test_nan_on_the_interpreter_pipe_is_not_relayed(make_sandbox, small_server):
    """NaN is not JSON (a response relaying it failed, 500): a line with one answers nothing."""
    r = _forge(make_sandbox(), small_server, "GET", "/contexts",
               lambda rid: b'{"id": %d, "reply": {"contexts": [{"id": NaN}]}}\n' % rid, hold=1)
    assert r.status_code == 200 and all(isinstance(c["id"], str) for c in r.json()), (r.status_code, r.text)
