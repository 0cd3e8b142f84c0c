"""Lifecycle: create -> the agent answers -> kill; kill is idempotent; a restarted runtime adopts
the sandboxes that live and only those; a failed create leaves nothing."""

from __future__ import annotations

import pytest
from host_resources import pid_namespace, sandbox_traces
from runtime_support import agent_host_pid, spec

from sandlot import SandlotError

from sandlot._exceptions import RuntimeFailure


async def test_create_answers_and_kill_ends_it(runtime, make_sandbox):
    box = make_sandbox()
    assert (await box.agent.ping())["ok"] is True
    assert runtime.alive(box.rt)
    assert box.id in runtime.leftovers()
    result = await box.run("echo hello; id -un")
    assert (result.exit_code, result.stdout) == (0, b"hello\nuser\n")
    runtime.kill(box.id)
    assert not runtime.alive(box.rt)
    with pytest.raises(SandlotError) as e:
        await box.agent.ping()
    assert e.value.code == "unavailable"
    assert box.id not in runtime.leftovers()
    assert sandbox_traces(box.id, runtime.home, box.pid_ns) == {}


async def test_kill_is_idempotent(runtime, make_sandbox):
    box = make_sandbox()
    runtime.kill(box.id)
    runtime.kill(box.id)
    runtime.kill("cnosuchsandbox000000")  # never existed: nothing to do, no error
    assert not runtime.alive(box.rt)


@pytest.mark.parametrize("crash", [False, True], ids=["after-stop", "after-crash"])
async def test_a_restarted_runtime_adopts_the_live_sandboxes_only(runtime, make_sandbox, crash):
    live, killed = make_sandbox(), make_sandbox()
    await live.agent.write("/home/user/kept", None, b"from before the restart")
    background = await live.run("nohup sleep 600 >/dev/null 2>&1 & echo $!")
    runtime.kill(killed.id)

    runtime.restart(crash=crash)  # a new runtime object on the same home, in a new process
    # as the control plane starts: adopt the sandboxes it knows, kill whatever else is left (a
    # crashed runtime may leave resources of its own, such as the namespace runtime's spare cgroups)
    left = runtime.leftovers()
    assert live.id in left and killed.id not in left, left
    for other in left - {live.id}:
        runtime.kill(other)
    assert runtime.leftovers() == {live.id}
    assert runtime.adopt(killed.id) is None
    assert runtime.adopt("cnosuchsandbox000000") is None
    adopted = runtime.adopt(live.id)
    assert adopted == live.rt  # the same sandbox: same socket, same process, same start time
    assert runtime.alive(adopted)
    assert pid_namespace(agent_host_pid(adopted.socket_path)) == live.pid_ns  # the same agent answers
    chunks = [c async for c in live.agent.read("/home/user/kept")]
    assert b"".join(chunks[1:]) == b"from before the restart"
    assert (await live.run(f"kill -0 {int(background.stdout)} && echo running")).stdout == b"running\n"
    # the adopted sandbox is the new runtime's to kill (make_sandbox checks nothing is left)


async def test_a_failed_create_leaves_nothing(runtime):
    before = runtime.leftovers()
    failing = spec()
    with pytest.raises(RuntimeFailure, match="agent did not start"):
        runtime.create(failing, python="/nonexistent/python3")  # the agent cannot start
    assert runtime.leftovers() == before
    assert sandbox_traces(failing.sandbox_id, runtime.home) == {}


async def test_a_pool_sandbox_comes_to_the_foreground(runtime, make_sandbox):
    box = make_sandbox(background=True)
    runtime.foreground(box.id)
    assert (await box.run("echo claimed")).stdout == b"claimed\n"
