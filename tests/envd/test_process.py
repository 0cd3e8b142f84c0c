"""process.Process through the official SDK: commands, stdin, signals, reconnects, PTYs."""

from __future__ import annotations

import time

import pytest
from envd_support import SANDBOX_ENVS
from e2b import CommandExitException, InvalidArgumentException, NotFoundException, TimeoutException
from e2b.sandbox.commands.command_handle import PtySize


def test_foreground_command(sandbox, user):
    result = sandbox.commands.run("echo out; echo err >&2; whoami; pwd; echo $SANDBOX_WIDE $LOGNAME")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["out", user.pw_name, user.pw_dir, f"{SANDBOX_ENVS['SANDBOX_WIDE']} {user.pw_name}"]
    assert result.stderr == "err\n"


def test_non_zero_exit_raises_with_the_result(sandbox):
    with pytest.raises(CommandExitException) as info:
        sandbox.commands.run("echo partial; exit 3")
    assert info.value.exit_code == 3
    assert info.value.stdout == "partial\n"


def test_envs_cwd_and_user(sandbox):
    result = sandbox.commands.run("echo $ONLY_HERE; pwd; whoami", envs={"ONLY_HERE": "x y"}, cwd="/tmp", user="root")
    assert result.stdout.splitlines() == ["x y", "/tmp", "root"]
    assert sandbox.commands.run("echo ${ONLY_HERE:-unset}").stdout == "unset\n"


def test_missing_cwd_is_an_error(sandbox):
    with pytest.raises(InvalidArgumentException):
        sandbox.commands.run("true", cwd="/no/such/dir")


def test_streaming_callbacks_see_output_as_it_comes(sandbox):
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    sandbox.commands.run("echo one; sleep 0.5; echo two >&2",
                         on_stdout=lambda s: seen.append((time.monotonic() - start, "out:" + s)),
                         on_stderr=lambda s: seen.append((time.monotonic() - start, "err:" + s)))
    assert [s for _, s in seen] == ["out:one\n", "err:two\n"]
    assert seen[1][0] - seen[0][0] > 0.3  # the first line arrived before the command ended


def test_background_command_stdin_and_wait(sandbox):
    handle = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.send_stdin(handle.pid, "hello ")
    sandbox.commands.send_stdin(handle.pid, b"bytes")
    sandbox.commands.close_stdin(handle.pid)
    result = handle.wait()
    assert result.stdout == "hello bytes"


def test_stream_input(sandbox):
    handle = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.stream_input(handle.pid, ["a", b"b", "c"])
    sandbox.commands.close_stdin(handle.pid)
    assert handle.wait().stdout == "abc"


def test_list_connect_and_kill(sandbox):
    handle = sandbox.commands.run("echo started; sleep 30", background=True, envs={"TAGGED": "1"}, cwd="/tmp")
    listed = {p.pid: p for p in sandbox.commands.list()}
    assert handle.pid in listed
    info = listed[handle.pid]
    assert (info.cmd, info.args[:2], info.envs, info.cwd) == ("/bin/bash", ["-l", "-c"], {"TAGGED": "1"}, "/tmp")

    again = sandbox.commands.connect(handle.pid)
    assert sandbox.commands.kill(handle.pid) is True
    with pytest.raises(CommandExitException) as info:
        again.wait()
    assert info.value.exit_code == -1
    assert handle.pid not in {p.pid for p in sandbox.commands.list()}


def test_unknown_pid(sandbox):
    assert sandbox.commands.kill(999_999) is False
    with pytest.raises(NotFoundException):
        sandbox.commands.connect(999_999)
    with pytest.raises(NotFoundException):
        sandbox.commands.send_stdin(999_999, "x")


def test_timeout_kills_the_command(sandbox, tmp_path):
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run(f"echo $$ > {tmp_path}/pid; sleep 600", timeout=1, user="root")
    assert time.monotonic() - started < 10
    pid = int(sandbox.files.read(f"{tmp_path}/pid", user="root"))
    deadline = time.monotonic() + 20  # generous for a loaded host: the command would run 600 s
    while pid in {p.pid for p in sandbox.commands.list()} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in {p.pid for p in sandbox.commands.list()}


def test_connect_timeout_ends_the_stream_not_the_process(sandbox):
    handle = sandbox.commands.run("sleep 30", background=True)
    try:
        with pytest.raises(TimeoutException):
            sandbox.commands.connect(handle.pid, timeout=0.5).wait()
        assert handle.pid in {p.pid for p in sandbox.commands.list()}
    finally:
        sandbox.commands.kill(handle.pid)


def test_pty_send_resize_and_exit(sandbox):
    chunks: list[bytes] = []
    terminal = sandbox.pty.create(PtySize(rows=24, cols=80), timeout=20)
    sandbox.pty.resize(terminal.pid, PtySize(rows=30, cols=123))
    sandbox.pty.send_stdin(terminal.pid, b"tput cols; echo $TERM; exit 7\n")
    with pytest.raises(CommandExitException) as info:
        terminal.wait(on_pty=chunks.append)
    output = b"".join(chunks).decode()
    assert "123" in output and "xterm-256color" in output
    assert info.value.exit_code == 7


def test_pty_kill(sandbox):
    terminal = sandbox.pty.create(PtySize(rows=24, cols=80), timeout=20)
    assert sandbox.pty.kill(terminal.pid) is True
    with pytest.raises(CommandExitException):
        terminal.wait()
    assert sandbox.pty.kill(terminal.pid) is False


async def test_async_commands(async_sandbox):
    lines: list[str] = []
    result = await async_sandbox.commands.run("for i in 1 2 3; do echo $i; done", on_stdout=lines.append)
    assert result.stdout == "1\n2\n3\n" and "".join(lines) == result.stdout
    handle = await async_sandbox.commands.run("read line; echo got $line", background=True, stdin=True)
    await async_sandbox.commands.send_stdin(handle.pid, "it\n")
    assert (await handle.wait()).stdout == "got it\n"


async def test_async_pty(async_sandbox):
    output = bytearray()
    terminal = await async_sandbox.pty.create(PtySize(rows=24, cols=80), on_data=output.extend, timeout=20)
    await async_sandbox.pty.send_stdin(terminal.pid, b"echo pty-$((6*7)); exit\n")
    await terminal.wait()
    assert b"pty-42" in output
