"""Commands through the official SDK: output, exit codes, streaming, background, stdin, signals,
timeouts, environment, users and the login shell (docs/e2b.md §3.5)."""

from __future__ import annotations

import threading
import time

import pytest
from e2b import (
    AsyncSandbox,
    AuthenticationException,
    CommandExitException,
    NotFoundException,
    SandboxException,
    TimeoutException,
)
from e2b_support import run
from support import unique, wait_until


def pids(sandbox) -> set[int]:
    return {p.pid for p in sandbox.commands.list()}


def process_count(sandbox, pattern: str) -> int:
    """How many processes in the sandbox have `pattern` in their command line (per ps)."""
    # the brackets keep grep from matching itself: '[s]leep 600.123' matches 'sleep 600.123'
    grep = f"[{pattern[0]}]{pattern[1:]}"
    _, out, _ = run(sandbox, f"ps -eo args= | grep -c -- '{grep}' || true")
    return int(out.strip() or 0)


def test_foreground_stdout_stderr_and_exit_code(sandbox):
    r = sandbox.commands.run("echo out; echo err >&2; printf 'no newline'")
    assert r.exit_code == 0
    assert r.stdout == "out\nno newline"
    assert r.stderr == "err\n"
    assert r.error in (None, "")


def test_python_is_python3_as_in_e2b_images(sandbox):
    assert sandbox.commands.run("python --version").stdout.startswith("Python 3.")


def test_non_zero_exit_raises_command_exit_exception(sandbox):
    with pytest.raises(CommandExitException) as info:
        sandbox.commands.run("echo partial; echo broken >&2; exit 3")
    err = info.value
    assert err.exit_code == 3
    assert err.stdout == "partial\n"
    assert err.stderr == "broken\n"
    # a failing pipeline stage with pipefail, and `false`
    with pytest.raises(CommandExitException) as info:
        sandbox.commands.run("false")
    assert info.value.exit_code == 1
    # the command is run by bash: a missing program is 127
    with pytest.raises(CommandExitException) as info:
        sandbox.commands.run("no-such-program-xyz")
    assert info.value.exit_code == 127
    assert "not found" in info.value.stderr


def test_streaming_callbacks_receive_output_in_order_before_completion(sandbox):
    events: list[tuple[str, str, float]] = []
    start = time.monotonic()
    r = sandbox.commands.run(
        "for i in 1 2 3 4; do echo out$i; echo err$i >&2; sleep 0.4; done",
        on_stdout=lambda s: events.append(("out", s, time.monotonic())),
        on_stderr=lambda s: events.append(("err", s, time.monotonic())),
    )
    done = time.monotonic()
    out = "".join(s for kind, s, _ in events if kind == "out")
    err = "".join(s for kind, s, _ in events if kind == "err")
    assert out == "out1\nout2\nout3\nout4\n" == r.stdout
    assert err == "err1\nerr2\nerr3\nerr4\n" == r.stderr
    # streamed, not buffered until the end: the first line arrived well before the command ended
    first_out = next(t for kind, s, t in events if kind == "out")
    assert done - first_out > 1.0, f"first stdout {first_out - start:.2f}s, end {done - start:.2f}s"
    first_err = next(t for kind, s, t in events if kind == "err")
    assert done - first_err > 1.0


def test_large_output_and_invalid_utf8(sandbox):
    r = sandbox.commands.run("head -c 3000000 /dev/zero | tr '\\0' a")
    assert len(r.stdout) == 3_000_000 and set(r.stdout) == {"a"}
    # invalid UTF-8 is replaced, not fatal
    r = sandbox.commands.run("printf 'ok\\xff\\xfe-end'")
    assert r.stdout.startswith("ok") and r.stdout.endswith("-end") and "\ufffd" in r.stdout


def test_background_command(sandbox):
    handle = sandbox.commands.run("sleep 0.5; echo done; echo warn >&2", background=True)
    assert isinstance(handle.pid, int) and handle.pid > 0
    assert handle.pid in pids(sandbox)
    result = handle.wait()
    assert result.exit_code == 0
    assert result.stdout == "done\n" and result.stderr == "warn\n"
    assert wait_until(lambda: handle.pid not in pids(sandbox), timeout=20, message="process to leave the list")

    failing = sandbox.commands.run("sleep 0.2; exit 7", background=True)
    with pytest.raises(CommandExitException) as info:
        failing.wait()
    assert info.value.exit_code == 7


def test_background_callbacks_on_wait(sandbox):
    handle = sandbox.commands.run("echo a; sleep 0.3; echo b", background=True)
    seen: list[str] = []
    handle.wait(on_stdout=seen.append)
    assert "".join(seen) == "a\nb\n"


def test_stdin_send_and_close(sandbox):
    handle = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.send_stdin(handle.pid, "hello\n")
    sandbox.commands.send_stdin(handle.pid, "wörld ✓\n")
    time.sleep(0.2)
    assert handle.pid in pids(sandbox), "cat must wait for more input until stdin is closed"
    sandbox.commands.close_stdin(handle.pid)
    result = handle.wait()
    assert result.exit_code == 0
    assert result.stdout == "hello\nwörld ✓\n"


def test_stdin_is_closed_by_default(sandbox):
    # without stdin=True the command sees EOF at once instead of hanging
    start = time.monotonic()
    r = sandbox.commands.run("cat; echo after-cat", timeout=20)
    assert r.stdout == "after-cat\n"
    assert time.monotonic() - start < 10


def test_send_stdin_to_unknown_process_fails(sandbox):
    with pytest.raises(SandboxException):
        sandbox.commands.send_stdin(999_999, "x")


def test_kill_background_process(sandbox):
    handle = sandbox.commands.run("sleep 600", background=True)
    assert handle.pid in pids(sandbox)
    assert sandbox.commands.kill(handle.pid) is True
    with pytest.raises(CommandExitException) as info:
        handle.wait()
    assert info.value.exit_code != 0
    assert wait_until(lambda: handle.pid not in pids(sandbox), timeout=20, message="killed process gone")  # a sleep 600
    # killing again, or an unknown pid: False
    assert sandbox.commands.kill(handle.pid) is False
    assert sandbox.commands.kill(999_999) is False


def test_only_commands_started_through_the_api_can_be_killed(sandbox):
    # pid 1 and a command's own children are not envd processes: kill() finds nothing to kill
    handle = sandbox.commands.run("sleep 300 & echo $!; wait", background=True)
    try:
        child = int(wait_until(lambda: run(sandbox, "pgrep -x sleep -n")[1].strip(), message="child sleep"))
        assert sandbox.commands.kill(1) is False
        assert sandbox.commands.kill(child) is False
        assert sandbox.commands.run("echo alive").stdout == "alive\n"
        assert handle.pid in pids(sandbox)
    finally:
        handle.kill()


def test_kill_through_the_handle(sandbox):
    handle = sandbox.commands.run("sleep 600", background=True)
    assert handle.kill() is True
    with pytest.raises(CommandExitException):
        handle.wait()
    assert handle.pid not in pids(sandbox)


def test_connect_to_running_process_receives_later_output(sandbox):
    # "later" is printed once the test says so, after it has connected (a fixed 1.5 s sleep could
    # end before the connect on a loaded host)
    go = f"/tmp/{unique('go-')}"
    handle = sandbox.commands.run(f"echo early; while [ ! -e {go} ]; do sleep 0.05; done; echo later; sleep 0.2; "
                                  "echo last", background=True)
    time.sleep(0.5)
    handle.disconnect()  # detaching does not stop the process
    assert handle.pid in pids(sandbox)
    seen: list[str] = []
    connected = sandbox.commands.connect(handle.pid)
    assert connected.pid == handle.pid
    sandbox.files.write(go, "")
    result = connected.wait(on_stdout=seen.append)
    assert result.exit_code == 0
    assert "later\nlast\n" in "".join(seen)
    assert result.stdout.endswith("later\nlast\n")


def test_connect_to_unknown_pid_fails(sandbox):
    with pytest.raises(SandboxException) as info:
        sandbox.commands.connect(999_999).wait()
    assert isinstance(info.value, NotFoundException) or "not found" in str(info.value).lower()


def test_list_shows_background_processes(sandbox, workdir):
    marker = unique("m")
    handle = sandbox.commands.run(f"sleep 300 # {marker}", background=True, envs={"LISTED": marker},
                                  cwd=workdir)
    try:
        [info] = [p for p in sandbox.commands.list() if p.pid == handle.pid]
        assert info.cmd == "/bin/bash"
        assert info.args[-1] == f"sleep 300 # {marker}"
        assert info.envs.get("LISTED") == marker
        assert info.cwd == workdir
    finally:
        handle.kill()


# The commands below sleep far longer than the test waits for their end (600 s, not 10 s): each
# wait can then be generous for a loaded host and still fail if the command is not killed.


def test_timeout_raises_quickly_and_kills_the_process(sandbox):
    start = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 600.123", timeout=1)
    assert time.monotonic() - start < 15  # at its 1 s deadline (plus a loaded host's delays), not 600 s
    # the server kills the command at its deadline, like envd (docs/e2b.md §3.3)
    wait_until(lambda: not any("sleep 600.123" in " ".join(p.args) for p in sandbox.commands.list()),
               timeout=30, message="timed-out command to leave commands.list")
    wait_until(lambda: process_count(sandbox, "sleep 600.123") == 0, timeout=30,
               message="timed-out command to be killed")


def test_background_command_is_killed_at_its_deadline(sandbox):
    handle = sandbox.commands.run("sleep 600.456", background=True, timeout=1)
    assert handle.pid in pids(sandbox)
    wait_until(lambda: handle.pid not in pids(sandbox), timeout=30, message="process killed at its deadline")
    assert process_count(sandbox, "sleep 600.456") == 0


def test_envs_apply_to_one_command_only(sandbox):
    r = sandbox.commands.run('printf "%s|%s" "$FOO" "$SPACED"', envs={"FOO": "bar", "SPACED": "a b 'c' $HOME"})
    assert r.stdout == "bar|a b 'c' $HOME"
    assert sandbox.commands.run('printf "[%s]" "$FOO"').stdout == "[]"
    # request envs override the login defaults
    assert sandbox.commands.run("echo $USER", envs={"USER": "override"}).stdout == "override\n"


def test_cwd(sandbox, workdir):
    assert sandbox.commands.run("pwd").stdout == "/home/user\n"
    assert sandbox.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sandbox.commands.run("pwd", cwd=workdir).stdout == f"{workdir}\n"
    # a missing directory is an error, not a command run somewhere else
    try:
        r = sandbox.commands.run("pwd", cwd="/no/such/dir")
    except (SandboxException, CommandExitException):
        pass
    else:
        pytest.fail(f"a command with a missing cwd ran in {r.stdout!r}")


def test_users(sandbox):
    assert sandbox.commands.run("whoami").stdout == "user\n"
    assert sandbox.commands.run("whoami", user="user").stdout == "user\n"
    assert sandbox.commands.run("whoami", user="root").stdout == "root\n"
    assert sandbox.commands.run("id -u", user="root").stdout == "0\n"
    assert sandbox.commands.run("id -u").stdout == "1000\n"
    # an unknown user is refused, and nothing runs
    with pytest.raises((SandboxException, AuthenticationException)):
        sandbox.commands.run("whoami", user="nosuchuser")
    # sudo works for the default user without a password
    assert sandbox.commands.run("sudo whoami").stdout == "root\n"
    assert sandbox.commands.run("sudo -n true && echo ok").stdout == "ok\n"


def test_files_created_by_a_command_belong_to_its_user(sandbox, workdir):
    sandbox.commands.run(f"touch {workdir}/by-user")
    sandbox.commands.run(f"touch {workdir}/by-root", user="root")
    assert sandbox.files.get_info(f"{workdir}/by-user").owner == "user"
    assert sandbox.files.get_info(f"{workdir}/by-root").owner == "root"


def test_login_shell_environment(sandbox):
    r = sandbox.commands.run('echo "$HOME|$USER|$LOGNAME"; echo "$PATH"; shopt -q login_shell && echo login')
    first, path, login = r.stdout.splitlines()
    assert first == "/home/user|user|user"
    assert "/usr/bin" in path.split(":") and "/bin" in path.split(":")
    assert login == "login"
    r = sandbox.commands.run('echo "$HOME|$USER|$LOGNAME"', user="root")
    assert r.stdout == "/root|root|root\n"
    # bash -l explicitly, as a user would type it
    r = sandbox.commands.run("bash -l -c 'echo $HOME:$USER; command -v python3 git curl'")
    lines = r.stdout.splitlines()
    assert lines[0] == "/home/user:user"
    assert len(lines) == 4, r.stdout


def test_base_image_tools(sandbox):
    r = sandbox.commands.run("python3 -c 'print(6*7)'; git --version; curl --version | head -1; tput -V")
    lines = r.stdout.splitlines()
    assert lines[0] == "42"
    assert lines[1].startswith("git version")
    assert lines[2].startswith("curl ")


def test_parallel_commands(sandbox):
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = sandbox.commands.run(f"sleep 0.3; echo {i}").stdout
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert results == {i: f"{i}\n" for i in range(6)}
    assert time.monotonic() - start < 5  # they ran concurrently


async def test_async_commands(sandbox):
    sbx = await AsyncSandbox.connect(sandbox.sandbox_id)
    r = await sbx.commands.run("echo async; echo aerr >&2")
    assert (r.stdout, r.stderr, r.exit_code) == ("async\n", "aerr\n", 0)

    seen: list[str] = []
    handle = await sbx.commands.run("echo one; sleep 0.3; echo two", background=True, on_stdout=seen.append)
    result = await handle.wait()
    assert result.stdout == "one\ntwo\n" and "".join(seen) == "one\ntwo\n"

    with pytest.raises(CommandExitException) as info:
        await sbx.commands.run("exit 4")
    assert info.value.exit_code == 4

    handle = await sbx.commands.run("cat", background=True, stdin=True)
    await sbx.commands.send_stdin(handle.pid, "via async\n")
    await sbx.commands.close_stdin(handle.pid)
    assert (await handle.wait()).stdout == "via async\n"
