"""Runs against the sandbox's life: client timeouts (and the interrupt that follows), the sandbox
killed mid-run, kernels that die, sandbox-wide environment variables, and who may call /execute."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
from e2b_code_interpreter import Sandbox, TimeoutException
from interp_support import driver_pid, driver_stdout, jupyter_headers, ok, stdout, wait_for_file, write_until
from support import access_token, kill_quietly

# ---- client timeouts ----------------------------------------------------------------------------


def test_timeout_raises_and_the_context_recovers(sandbox, ctx):
    ok(sandbox.run_code("survivor = 'kept'", context=ctx))
    start = time.monotonic()
    with pytest.raises(TimeoutException) as info:
        sandbox.run_code("partial = 'set before the sleep'\nimport time\ntime.sleep(30)\nnever = 1",
                         context=ctx, timeout=2)
    elapsed = time.monotonic() - start
    assert "timed out" in str(info.value).lower(), info.value
    # SDK 2.11.5 on e2b 2.63's transport turns timeout=2 into a whole-request deadline of
    # read + write = 4 s; either way it must be nowhere near the 30 s the code wanted
    assert 1.5 <= elapsed < 8, elapsed
    # the server interrupted the kernel when the client left: the next run starts at once
    start = time.monotonic()
    execution = sandbox.run_code("survivor, partial, 'never' in globals()", context=ctx, timeout=15)
    assert time.monotonic() - start < 5
    ok(execution)
    assert execution.text == "('kept', 'set before the sleep', False)"
    # nothing of the interrupted run (its KeyboardInterrupt) leaks into the next one
    assert execution.logs.stdout == [] and execution.logs.stderr == []


def test_timeout_in_the_default_context(sandbox):
    ok(sandbox.run_code("default_survivor = 5"))
    with pytest.raises(TimeoutException):
        sandbox.run_code("while True: pass", timeout=1)  # a busy loop, not a sleep
    start = time.monotonic()
    assert ok(sandbox.run_code("default_survivor", timeout=15)).text == "5"
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(("language", "sleep", "check"), [
    ("python", "import time; time.sleep(30)", "import os; os.environ.get('TMO_ENV', 'unset')"),
    ("javascript", "await new Promise((r) => setTimeout(r, 30000))", "process.env.TMO_ENV ?? 'unset'"),
])
def test_per_run_envs_are_restored_after_a_timeout(sandbox, language, sleep, check):
    context = sandbox.create_code_context(language=language)
    try:
        with pytest.raises(TimeoutException):
            sandbox.run_code(sleep, context=context, envs={"TMO_ENV": "1"}, timeout=1)
        assert ok(sandbox.run_code(check, context=context, timeout=15)).text == "unset"
        assert ok(sandbox.run_code(check, context=context, envs={"TMO_ENV": "2"})).text == "2"
        assert ok(sandbox.run_code(check, context=context)).text == "unset"
    finally:
        sandbox.remove_code_context(context)


def said(execution) -> str:
    """What a run answered: bash prints, node returns a value."""
    return stdout(execution).strip() or execution.text


@pytest.mark.parametrize(("language", "setup", "busy"), [
    ("bash", "KEPT=yes", "while true; do :; done"),
    ("bash", "KEPT=yes", "sleep 30"),
    ("javascript", "globalThis.KEPT = 'yes'", "while (true) {}"),
    ("javascript", "globalThis.KEPT = 'yes'", "await new Promise((r) => setTimeout(r, 30000))"),
    ("typescript", "const KEPT: string = 'yes'", "let n: number = 0; while (true) { n++ }"),
])
def test_timeout_interrupts_other_languages(sandbox, language, setup, busy):
    context = sandbox.create_code_context(language=language)
    try:
        ok(sandbox.run_code(setup, context=context, timeout=30))
        with pytest.raises(TimeoutException):
            sandbox.run_code(busy, context=context, timeout=1)
        start = time.monotonic()
        execution = ok(sandbox.run_code('echo "$KEPT"' if language == "bash" else "KEPT", context=context, timeout=15))
        assert time.monotonic() - start < 5  # interrupted, not still running
        assert said(execution) == "yes"
    finally:
        sandbox.remove_code_context(context)


def test_timeout_zero_means_no_timeout(sandbox, ctx):
    execution = ok(sandbox.run_code("import time; time.sleep(1.5); 'slept'", context=ctx, timeout=0))
    assert execution.text == "slept"


def test_quiet_long_run_is_kept_alive(sandbox, ctx):
    # no output for longer than the server's keepalive interval (5 s): the run still completes
    execution = ok(sandbox.run_code("import time; time.sleep(6.5); 'woke'", context=ctx, timeout=60))
    assert execution.text == "woke"


# ---- the sandbox killed mid-run -----------------------------------------------------------------


def test_kill_during_a_run(server, make_sandbox):
    sbx = make_sandbox()
    ok(sbx.run_code("1"))
    logged = server.log.stat().st_size
    killer = threading.Timer(1.5, sbx.kill)
    start = time.monotonic()
    killer.start()
    try:
        with pytest.raises(TimeoutException) as info:
            sbx.run_code("import time; time.sleep(60)", timeout=45)
    finally:
        killer.join()
    assert "killed" in str(info.value), info.value
    assert time.monotonic() - start < 15
    assert not sbx.is_running()
    # the stream is broken off on purpose: no error or traceback in the server's log for it
    with server.log.open() as f:
        f.seek(logged)
        assert "Traceback" not in f.read()


# ---- kernels that die ---------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "how"), [
    ("import os; os._exit(1)", "exit status 1"),
    ("import ctypes; ctypes.string_at(0)", "signal 11"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal 9"),
])
def test_kernel_death(sandbox, ctx, code, how):
    ok(sandbox.run_code("lost_on_death = 1", context=ctx))
    start = time.monotonic()
    execution = sandbox.run_code(code, context=ctx, timeout=30)
    assert time.monotonic() - start < 10
    assert execution.error is not None, execution
    assert execution.error.name == "KernelDied", (execution.error.name, execution.error.value)
    assert how in execution.error.value, execution.error.value
    # the next run gets a fresh kernel in the same context
    execution = sandbox.run_code("lost_on_death", context=ctx, timeout=60)
    assert execution.error is not None and execution.error.name == "NameError"
    assert execution.execution_count == 1
    assert ok(sandbox.run_code("6 * 7", context=ctx)).text == "42"
    # neither the sandbox nor its other contexts noticed
    assert sandbox.commands.run("true").exit_code == 0
    assert ok(sandbox.run_code("'default ok'")).text == "default ok"


@pytest.mark.parametrize(("language", "setup", "kill", "check", "how"), [
    # bash_kernel restarts a bash that exits by itself; its parent is the kernel
    ("bash", "KEPT=yes", "kill -9 $PPID", 'echo "[${KEPT-gone}]"', "signal 9"),
    ("javascript", "globalThis.KEPT = 'yes'", "process.exit(3)", "typeof KEPT", "exit status 3"),
    ("typescript", "const KEPT: string = 'yes'", "process.kill(process.pid, 'SIGKILL')", "typeof KEPT", "signal 9"),
])
def test_kernel_death_in_other_languages(sandbox, language, setup, kill, check, how):
    context = sandbox.create_code_context(language=language)
    try:
        ok(sandbox.run_code(setup, context=context, timeout=30))
        start = time.monotonic()
        execution = sandbox.run_code(kill, context=context, timeout=30)
        assert time.monotonic() - start < 10
        assert execution.error is not None and execution.error.name == "KernelDied", execution.error
        assert how in execution.error.value, execution.error.value
        # restarted afresh on the next run
        execution = ok(sandbox.run_code(check, context=context, timeout=60))
        assert said(execution) in ("[gone]", "undefined") and execution.execution_count == 1
        assert ok(sandbox.run_code("'default ok'")).text == "default ok"
        assert sandbox.commands.run("true").exit_code == 0
    finally:
        sandbox.remove_code_context(context)


def test_killing_the_interpreter_process(make_sandbox):
    """The kernel's parent is sandlot's in-sandbox driver, which runs as the same user: user code
    can kill it. The run must end (not hang) and the sandbox's code interpreter must come back."""
    sbx = make_sandbox()
    ok(sbx.run_code("before = 1"))
    start = time.monotonic()
    execution = sbx.run_code("import os, signal; os.kill(os.getppid(), signal.SIGKILL)", timeout=30)
    assert time.monotonic() - start < 10
    assert execution.error is not None
    assert ok(sbx.run_code("1 + 1", timeout=60)).text == "2"
    assert sbx.run_code("before").error.name == "NameError"  # a fresh interpreter
    assert sbx.list_code_contexts()[0].language == "python"
    assert sbx.commands.run("true").exit_code == 0


def test_the_interpreter_pipes_are_out_of_reach(make_sandbox):
    """The driver's stdin and stdout are the control plane's pipes: sandbox code (user or root)
    can neither write requests or answers into them nor read them through /proc."""
    sbx = make_sandbox()
    for fd, mode in ((0, "r"), (0, "w"), (1, "w"), (1, "r")):
        execution = sbx.run_code(f"import os\nopen('/proc/%d/fd/{fd}' % os.getppid(), '{mode}')", timeout=30)
        assert execution.error is not None and execution.error.name == "PermissionError", (fd, mode, execution)
    driver = sbx.commands.run("pgrep -f kernels/driver.py").stdout.split()[0]
    for fd in (0, 1):
        done = sbx.commands.run(f"sudo sh -c 'echo x > /proc/{driver}/fd/{fd}' || echo refused", timeout=30)
        assert "refused" in done.stdout, done
    assert ok(sbx.run_code("6 * 7")).text == "42"


def test_kernel_code_cannot_take_the_driver_over(make_sandbox):
    """The driver runs as the kernels' user: kernel code must get neither its pipes to the control
    plane (pidfd_getfd) nor its memory (/proc/PID/mem), which would let it answer for other runs."""
    sbx = make_sandbox()
    execution = ok(sbx.run_code(
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True); libc.syscall.restype = ctypes.c_long\n"
        "driver = os.getppid()\n"
        "got = {'getfd': libc.syscall(438, os.pidfd_open(driver), 1, 0), 'getfd_errno': ctypes.get_errno()}\n"
        "for name, flags in (('mem', os.O_RDWR), ('environ', os.O_RDONLY)):\n"
        "    try:\n"
        "        os.close(os.open(f'/proc/{driver}/{name}', flags)); got[name] = 'opened'\n"
        "    except OSError as e:\n"
        "        got[name] = e.errno\n"
        "got"))
    import errno

    assert execution.text == str({"getfd": -1, "getfd_errno": errno.EPERM, "mem": errno.EACCES,
                                  "environ": errno.EACCES}), execution.text
    assert ok(sbx.run_code("6 * 7")).text == "42"


def test_garbage_on_the_interpreter_pipe_is_ignored(make_sandbox):
    """A driver taken over (played from the host: sandbox code cannot, see above) writes garbage to
    the control plane during a run: lines that are not the driver's own must not be taken for
    answers, nor break the interpreter."""
    sbx = make_sandbox()
    ok(sbx.run_code("kept = 'yes'"))
    result = {}
    run = threading.Thread(target=lambda: result.update(execution=sbx.run_code(
        "open('/tmp/started', 'w').close()\nimport time\ntime.sleep(1)\n'wrote'", timeout=30)))
    run.start()
    wait_for_file(sbx, "/tmp/started")
    fd = driver_stdout(sbx.sandbox_id)
    try:
        garbage = b'not json\n[1, 2]\n{"id": 999999, "reply": {}}\n{"ready": {}}\n'
        assert write_until(fd, garbage, lambda: False) == len(garbage)
    finally:
        os.close(fd)
    run.join(60)
    assert ok(result["execution"]).text == "wrote"
    # the interpreter kept going: same kernel, same state, correct answers
    assert ok(sbx.run_code("kept", timeout=60)).text == "yes"
    assert ok(sbx.run_code("40 + 2", timeout=60)).text == "42"
    assert sbx.commands.run("true").exit_code == 0


def test_a_flood_of_lines_answering_nothing_stops_the_driver(make_sandbox):
    """A driver taken over (played from the host) floods the control plane with lines for requests
    never made: parsing them costs the shared event loop, so past a small budget the control plane
    stops that driver; the sandbox's next run gets a fresh interpreter."""
    sbx = make_sandbox()
    ok(sbx.run_code("kept = 'yes'"))
    driver = driver_pid(sbx.sandbox_id)
    fd = driver_stdout(sbx.sandbox_id)
    try:
        line = b'{"id": 999999, "line": {"type": "stdout", "text": "' + b"g" * 1000 + b'"}}\n'
        write_until(fd, line * 200, lambda: False)  # ~200 KiB, past the budget
    finally:
        os.close(fd)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{driver}"):  # the control plane stops it
        assert time.monotonic() < deadline, "the flooding driver was not stopped"
        time.sleep(0.05)
    assert sbx.run_code("kept", timeout=60).error.name == "NameError"  # a fresh interpreter
    assert ok(sbx.run_code("40 + 2", timeout=60)).text == "42"


def test_a_memory_bomb_kills_its_kernel_only(server, sdk_env):
    """A 256 MiB sandbox (created over REST with sandlot's `limits`, then used through the official
    SDK): a run that fills memory is OOM-killed in its kernel alone (the kernels are the OOM
    killer's first choice), reported as KernelDied; the other context, the sandbox and the server
    go on, and the bombed context starts afresh on its next run."""
    r = httpx.post(f"{server.url}/sandboxes", headers={"X-API-Key": server.api_key}, timeout=60,
                   json={"templateID": "code-interpreter", "timeout": 300, "limits": {"memory_mb": 256}})
    assert r.status_code == 201, r.text
    sbx = Sandbox.connect(r.json()["sandboxID"])
    try:
        other = sbx.create_code_context()
        ok(sbx.run_code("kept = 'other'", context=other))
        bomb = sbx.create_code_context()
        ok(sbx.run_code("before = 1", context=bomb))
        start = time.monotonic()
        # bytes filled as they are made: resident at once, so the cgroup's limit is met, not malloc's
        execution = sbx.run_code("x = []\nwhile True:\n    x.append(b'\\x01' * (1 << 25))", context=bomb,
                                 timeout=120)
        assert time.monotonic() - start < 60
        assert execution.error is not None and execution.error.name == "KernelDied", execution.error
        assert "signal 9" in execution.error.value, execution.error.value
        assert ok(sbx.run_code("kept", context=other)).text == "other"
        assert sbx.run_code("before", context=bomb, timeout=60).error.name == "NameError"  # afresh
        assert ok(sbx.run_code("6 * 7", context=bomb)).text == "42"
        assert sbx.commands.run("echo alive").stdout == "alive\n"
        assert sbx.get_info().state.value == "running"
    finally:
        kill_quietly(sbx)


# ---- sandbox-wide environment variables ---------------------------------------------------------


def test_sandbox_envs_reach_the_kernels(make_sandbox):
    sbx = make_sandbox(envs={"SBX_WIDE": "wide value", "SBX_OTHER": "2"})
    assert ok(sbx.run_code("import os; os.environ.get('SBX_WIDE')")).text == "wide value"
    assert stdout(ok(sbx.run_code("!echo $SBX_WIDE"))).strip() == "wide value"
    assert stdout(ok(sbx.run_code('echo "$SBX_WIDE/$SBX_OTHER"', language="bash"))).strip() == "wide value/2"
    context = sbx.create_code_context(cwd="/tmp")
    assert ok(sbx.run_code("import os; os.environ.get('SBX_OTHER')", context=context)).text == "2"
    # a per-run value overrides it for one run only
    assert ok(sbx.run_code("import os; os.environ['SBX_WIDE']", envs={"SBX_WIDE": "run"})).text == "run"
    assert ok(sbx.run_code("import os; os.environ['SBX_WIDE']")).text == "wide value"


def test_template_names(make_sandbox):
    for template in ("code-interpreter", "code-interpreter-v1"):
        sbx = make_sandbox(template=template)
        assert ok(sbx.run_code("'from ' + __name__")).text == "from __main__"


def test_base_template_has_no_interpreter(make_sandbox):
    from e2b_code_interpreter import SandboxException

    sbx = make_sandbox(template="base")
    with pytest.raises(SandboxException) as info:
        sbx.run_code("1")
    assert "code-interpreter" in str(info.value), info.value
    assert sbx.commands.run("true").exit_code == 0


# ---- auth on the interpreter's routes -----------------------------------------------------------


def test_execute_requires_the_access_token(server, sandbox):
    url = f"{server.url}/execute"
    body = {"code": "'reached'"}
    for headers in (jupyter_headers(sandbox.sandbox_id, "wrong-token"), jupyter_headers(sandbox.sandbox_id),
                    jupyter_headers(sandbox.sandbox_id, "")):
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert "reached" not in r.text


def test_context_routes_require_a_token(server, sandbox):
    sid = sandbox.sandbox_id
    calls = [("GET", "/contexts", None), ("POST", "/contexts", {}), ("POST", "/contexts/x/restart", None),
             ("DELETE", "/contexts/x", None)]
    for method, path, body in calls:
        for headers in (jupyter_headers(sid), jupyter_headers(sid, "wrong-token"),
                        jupyter_headers(sid, **{"E2B-Traffic-Access-Token": "wrong-token"})):
            r = httpx.request(method, server.url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)


def test_another_sandboxs_token_is_refused(server, sandbox, make_sandbox):
    other = make_sandbox()
    token = access_token(server, other.sandbox_id)
    r = httpx.post(f"{server.url}/execute", json={"code": "1"},
                   headers=jupyter_headers(sandbox.sandbox_id, token), timeout=30)
    assert r.status_code == 401, r.text
    r = httpx.get(f"{server.url}/contexts", headers=jupyter_headers(sandbox.sandbox_id, token), timeout=30)
    assert r.status_code == 401, r.text


def test_execute_wire_format(server, sandbox):
    """With the right token: newline-delimited JSON, no blank lines, ending with end_of_execution."""
    token = access_token(server, sandbox.sandbox_id)
    r = httpx.post(f"{server.url}/execute", json={"code": "print('w')\n6 * 7", "context_id": None,
                                                   "language": None, "env_vars": None},
                   headers=jupyter_headers(sandbox.sandbox_id, token), timeout=30)
    assert r.status_code == 200, r.text
    lines = r.text.split("\n")
    assert lines[-1] == "", "the body ends with a newline"
    messages = [json.loads(line) for line in lines[:-1]]  # every line is JSON: no blank lines
    types = [m["type"] for m in messages if m["type"] != "keepalive"]
    assert types[0] == "number_of_executions" and types[-1] == "end_of_execution", types
    assert [m["text"] for m in messages if m["type"] == "stdout"] == ["w\n"]
    result = next(m for m in messages if m["type"] == "result")
    assert (result["text"], result["is_main_result"]) == ("42", True)


def test_bad_execute_bodies(server, sandbox):
    token = access_token(server, sandbox.sandbox_id)
    headers = jupyter_headers(sandbox.sandbox_id, token)
    for body in ({}, {"code": 1}, {"code": "1", "env_vars": ["A"]}, {"code": "1", "context_id": 5},
                 {"code": "1", "context_id": "x", "language": "python"}, {"code": "1", "timeout": "5"},
                 {"code": "1", "timeout": [1]}, {"code": "1", "timeout": True}, {"code": "1", "env_vars": {"A": 1}}):
        r = httpx.post(f"{server.url}/execute", json=body, headers=headers, timeout=30)
        assert r.status_code == 400, (body, r.status_code, r.text)
    r = httpx.post(f"{server.url}/execute", content=b"{not json", headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    r = httpx.post(f"{server.url}/execute", json=["code"], headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    for timeout in (b"NaN", b"Infinity", b"-Infinity"):  # Python's JSON reader takes these
        r = httpx.post(f"{server.url}/execute", content=b'{"code": "1", "timeout": ' + timeout + b"}",
                       headers=headers, timeout=30)
        assert r.status_code == 400 and "timeout" in r.text, (timeout, r.status_code, r.text)
    assert ok(sandbox.run_code("'fine'")).text == "fine"


def test_connect_to_an_existing_sandbox(sandbox):
    ok(sandbox.run_code("connected_state = 'shared'"))
    again = Sandbox.connect(sandbox.sandbox_id)
    assert ok(again.run_code("connected_state")).text == "shared"
