"""session.*: state that carries between commands, output that never crosses from one command to
the next, exact exit codes, stdin, interrupts that leave the shell usable, and the session's end."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from agent_support import collect, pid_alive
from support import wait_until

from sandlot import AlreadyExists, InvalidArgument, NotFound


async def run(client, sid, cmd, **kwargs):
    return await asyncio.wait_for(collect(client.session_exec(sid, cmd, **kwargs)), 30)


@pytest.fixture
async def session(client):
    info = await client.session_create()
    yield info["id"]
    try:
        await client.session_delete(info["id"])
    except NotFound:
        pass  # the test ended it


async def test_state_carries_between_commands(client, session, home):
    for cmd in ("cd /tmp && export FOO=bar", "declare -a arr=(1 2 3)", "greet() { echo hi $1; }",
                "alias ll='echo listed'",
                "python3 -m venv --without-pip /tmp/venv-$$ >/dev/null && source /tmp/venv-$$/bin/activate"):
        assert (await run(client, session, cmd)).exit_code == 0, cmd
    try:
        result = await run(client, session, "pwd; echo $FOO ${arr[2]}; greet you; ll; command -v python3")
    finally:  # the agent runs on the host here: its /tmp is the host's
        await run(client, session, "rm -rf /tmp/venv-$$")
    lines = result.stdout.decode().splitlines()
    assert lines[:4] == ["/tmp", "bar 3", "hi you", "listed"]
    assert lines[4].startswith("/tmp/venv-") and lines[4].endswith("/bin/python3")
    assert (await client.session_get(session))["cwd"] == "/tmp"


async def test_exit_codes_are_exact_and_dollar_question_carries(client, session):
    for code in (0, 1, 2, 42, 255):
        assert (await run(client, session, f"(exit {code})")).exit_code == code
    assert (await run(client, session, "false")).exit_code == 1
    assert (await run(client, session, "echo $?")).stdout == b"1\n"
    assert (await run(client, session, "sh -c 'kill -TERM $$'")).exit_code == 128 + 15
    assert (await run(client, session, "no-such-command-here")).exit_code == 127


async def test_stdout_and_stderr_are_separate_and_whole(client, session):
    result = await run(client, session, "echo out; echo err >&2; printf 'no newline'")
    assert result.stdout == b"out\nno newline" and result.stderr == b"err\n"
    big = await run(client, session, "head -c 3000000 /dev/zero | tr '\\0' x")
    assert big.stdout == b"x" * 3_000_000


async def test_background_output_never_reaches_the_next_command(client, session):
    started = await run(client, session,
                        "(sleep 0.3; for i in 1 2 3 4 5; do echo late-$i; sleep 0.1; done) & echo started")
    assert started.stdout == b"started\n" and started.stderr == b""  # no "[1] PID" job notice
    for _ in range(8):  # while the job writes on
        result = await run(client, session, "sleep 0.05; echo now")
        assert result.stdout == b"now\n" and result.stderr == b""
    jobs = await run(client, session, "sleep 30 & echo $!")
    pid = int(jobs.stdout)
    assert pid_alive(pid)  # background jobs outlive their command
    assert (await run(client, session, f"kill {pid}; wait {pid}; echo waited $?")).stdout == b"waited 143\n"


async def test_stdin_is_closed_unless_given(client, session):
    start = time.monotonic()
    result = await run(client, session, "cat; read line; echo read=$?")
    assert result.stdout == b"read=1\n" and time.monotonic() - start < 5
    given = await run(client, session, "cat | tr a-z A-Z", stdin=b"hello\nworld\n")
    assert given.stdout == b"HELLO\nWORLD\n"


async def test_a_timeout_interrupts_the_command_and_keeps_the_shell(client, session):
    await run(client, session, "export KEEP=kept; cd /tmp")
    for cmd in ("sleep 30; echo after", "while :; do :; done; echo after", "f() { sleep 30; }; f; echo after",
                # a program that ignores SIGINT is killed after the grace period
                "python3 -c 'import signal,time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(30)'"):
        start = time.monotonic()
        result = await run(client, session, cmd, timeout_ms=300)
        assert result.end["timed_out"] and result.end["exit_code"] == 130, (cmd, result)
        assert b"after" not in result.stdout
        assert time.monotonic() - start < 5
        after = await run(client, session, "echo $KEEP; pwd")
        assert after.stdout == b"kept\n/tmp\n", cmd


async def test_a_timeout_leaves_older_background_jobs_alone(client, session):
    pid = int((await run(client, session, "sleep 60 & echo $!")).stdout)
    result = await run(client, session, "sleep 30", timeout_ms=200)
    assert result.end["timed_out"]
    assert pid_alive(pid)


async def test_a_client_that_leaves_interrupts_its_command(client, session):
    events = client.session_exec(session, "echo started; sleep 30; echo never > /tmp/should-not-exist",
                                 announce=True)
    assert "start" in await events.__anext__()
    assert await events.__anext__() == {"stdout": b"started\n"}
    await events.aclose()
    result = await run(client, session, "echo next")  # waits its turn, then runs
    assert result.stdout == b"next\n"
    assert not os.path.exists("/tmp/should-not-exist")


async def test_commands_queue_in_order(client, session):
    results = await asyncio.gather(*(run(client, session, f"sleep 0.0{i}; echo {i}") for i in range(5)))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(5)]


async def test_exit_ends_the_session(client):
    sid = (await client.session_create("leaving"))["id"]
    result = await run(client, sid, "sleep 60 & exit 7")
    assert result.end == {"exit_code": 7, "timed_out": False, "interrupted": False, "shell_exited": True}
    with pytest.raises(NotFound):
        await client.session_get(sid)
    assert sid not in {s["id"] for s in await client.session_list()}


async def test_create_get_list_delete(client, user, home):
    info = await client.session_create("named-1", cwd="/tmp", envs={"GREETING": "hello"})
    assert info["id"] == "named-1" and info["cwd"] == "/tmp" and info["user"] == user.pw_name
    assert info["envs"] == {"GREETING": "hello"} and not info["busy"]
    with pytest.raises(AlreadyExists):
        await client.session_create("named-1")
    for bad in ("-x", "a/b", "x" * 65, "with space"):
        with pytest.raises(InvalidArgument):
            await client.session_create(bad)
    result = await run(client, "named-1", "echo $GREETING $SANDBOX_WIDE; whoami")
    assert result.stdout == f"hello yes\n{user.pw_name}\n".encode()
    root = await client.session_create("as-root", user="root")
    assert (await run(client, "as-root", "id -u")).stdout == b"0\n"
    assert {"named-1", "as-root"} <= {s["id"] for s in await client.session_list()}
    shell = info["pid"]
    child = int((await run(client, "named-1", "sleep 60 & echo $!")).stdout)
    await client.session_delete("named-1")
    await client.session_delete(root["id"])
    assert not pid_alive(shell)  # the delete waits for the shell's end
    # the child is killed with it, and dies when next scheduled: a moment later under load (its
    # `sleep 60` outlives the wait if it was not killed)
    wait_until(lambda: not pid_alive(child), timeout=20, message="the session's child to die")
    for call in (client.session_get("named-1"), client.session_delete("named-1"),
                 collect(client.session_exec("named-1", "true"))):
        with pytest.raises(NotFound):
            await call
    assert (await client.session_create("named-1"))["id"] == "named-1"  # the id is free again
    await client.session_delete("named-1")


async def test_exec_round_trip_has_no_fixed_delay(client, session):
    """No fork or poll interval per command: `true` costs a fraction of a millisecond of agent and
    shell time (benchmarks/sessions.py measures it through the SDK on an idle machine; the bound
    here leaves room for a CPU shared with other test runs)."""
    for _ in range(20):
        await run(client, session, "true")
    times = []
    for _ in range(200):
        start = time.perf_counter()
        await run(client, session, "true")
        times.append(time.perf_counter() - start)
    times.sort()
    assert times[len(times) // 2] < 0.02, f"p50 {times[len(times) // 2] * 1000:.2f} ms at the agent"
