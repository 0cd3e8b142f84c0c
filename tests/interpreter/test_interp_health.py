"""The code interpreter's /health on port 49999 and its supervision, as E2B users rely on them
(e2b-code-interpreter's tests/sync/test_supervision.py): inside the sandbox `curl
http://0.0.0.0:49999/health` answers 200 once the interpreter serves; through the control plane,
GET /health with `E2b-Sandbox-Port: 49999` says the same (envd's /health, port 49983, is
unchanged); kill the interpreter's processes as root and it comes back by itself."""

from __future__ import annotations

import time

import httpx
from e2b_code_interpreter import Sandbox
from interp_support import jupyter_headers, ok
from support import kill_quietly

CURL = 'curl -s -o /dev/null -w "%{http_code}" http://0.0.0.0:49999'


def inside(sandbox, path: str = "/health") -> str:
    """The status code curl gets from port 49999 inside the sandbox ("000": nothing listens)."""
    return sandbox.commands.run(f"{CURL}{path} || true", timeout=30).stdout.strip()


def outside(server, sandbox_id: str, port: str = "49999") -> httpx.Response:
    headers = jupyter_headers(sandbox_id, **{"E2b-Sandbox-Port": port})
    return httpx.get(f"{server.url}/health", headers=headers, timeout=30)


def wait_for(check, timeout: float = 90, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {check}")


def driver_pids(sandbox) -> set[str]:
    return set(sandbox.commands.run("pgrep -f '[k]ernels/driver.py' || true").stdout.split())


def test_health_inside_the_sandbox(sandbox):
    assert wait_for(lambda: inside(sandbox) == "200")  # E2B's wait_for_health
    body = sandbox.commands.run("curl -s http://localhost:49999/health").stdout
    assert body == '"OK"'
    assert inside(sandbox, "/execute") == "404"  # code runs through the control plane only


def test_health_through_the_control_plane(server, sandbox):
    ok(sandbox.run_code("1"))
    r = outside(server, sandbox.sandbox_id)
    assert (r.status_code, r.json()) == (200, "OK")
    assert outside(server, sandbox.sandbox_id, port="49983").status_code == 204  # envd's own


def test_no_interpreter_no_health(server, sdk_env):
    sbx = Sandbox.create(template="base", timeout=120)
    try:
        r = outside(server, sbx.sandbox_id)
        assert r.status_code == 502 and "port is not open" in r.json()["message"], r.text
        assert outside(server, sbx.sandbox_id, port="49983").status_code == 204
        assert sbx.commands.run(f"{CURL}/health || true").stdout.strip() == "000"
    finally:
        kill_quietly(sbx)


def test_killed_interpreter_comes_back_by_itself(server, make_sandbox):
    """E2B's test_restart_after_code_interpreter_kill: kill it as root; without any request, a new
    one starts and answers /health, and code runs again (in a fresh interpreter)."""
    sbx = make_sandbox()
    ok(sbx.run_code("before = 1"))
    first = wait_for(lambda: driver_pids(sbx))
    sbx.commands.run("pkill -9 -f '[k]ernels/driver.py'", user="root")
    wait_for(lambda: driver_pids(sbx) - first)  # a new driver, nobody having asked for one
    assert wait_for(lambda: inside(sbx) == "200")
    assert wait_for(lambda: outside(server, sbx.sandbox_id).status_code == 200)
    assert sbx.run_code("before").error.name == "NameError"
    assert ok(sbx.run_code("1 + 1")).text == "2"


def test_every_interpreter_process_killed_as_root(make_sandbox):
    """Driver and kernels of every language at once (E2B's test_restart_after_jupyter_kill): the
    interpreter comes back, no kernel of the old one is left behind, and all languages work."""
    sbx = make_sandbox()
    for language in ("python", "r", "java", "javascript", "bash"):
        ok(sbx.run_code("echo 1" if language == "bash" else "1", language=language, timeout=120))
    first = driver_pids(sbx)
    done = sbx.commands.run("pkill -9 -f '[k]ernels/driver.py|[i]pykernel_launcher|[b]ash_kernel'", user="root")
    assert done.exit_code == 0
    wait_for(lambda: driver_pids(sbx) - first)
    # IRkernel and the runners went with their driver (they do not watch for it themselves)
    wait_for(lambda: not sbx.commands.run("pgrep -f '[I]Rkernel|[J]avaRunner|[j]avascript.js' || true").stdout.strip(),
             timeout=30)
    assert wait_for(lambda: inside(sbx) == "200")
    assert ok(sbx.run_code("6 * 7", timeout=60)).text == "42"
    assert ok(sbx.run_code("6 * 7", language="r", timeout=120)).results[0].text == "[1] 42"
    assert ok(sbx.run_code("6 * 7", language="java", timeout=120)).text == "42"


def test_a_killed_kernel_comes_back_on_its_next_run(sandbox):
    """Only the default python kernel killed (the driver lives): /health stays up and the next
    run has a fresh kernel."""
    context = sandbox.create_code_context()
    try:
        ok(sandbox.run_code("kept = 1", context=context))
        pid = ok(sandbox.run_code("import os; os.getpid()", context=context)).text
        sandbox.commands.run(f"kill -9 {pid}", user="root")
        assert inside(sandbox) == "200"
        assert sandbox.run_code("kept", context=context, timeout=60).error.name == "NameError"
        assert ok(sandbox.run_code("2 + 2", context=context)).text == "4"
    finally:
        sandbox.remove_code_context(context)
