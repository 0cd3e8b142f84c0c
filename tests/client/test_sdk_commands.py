"""`sandbox.commands` and command handles, on both surfaces, in real sandboxes."""

from __future__ import annotations

import time

import pytest

from sandlot import CommandExitError, CommandResult, InvalidArgument, NotFound, TimeoutError
from sdk_support import collect, eventually, maybe


async def test_run(sandbox):
    result = await maybe(sandbox.commands.run("echo out; echo err >&2"))
    assert isinstance(result, CommandResult)
    assert (result.stdout, result.stderr, result.exit_code, result.success) == ("out\n", "err\n", 0, True)
    assert 0 < result.duration < 10


async def test_environment_cwd_and_user(sandbox):
    result = await maybe(sandbox.commands.run("echo $A $HOME; pwd; whoami", envs={"A": "1"}, cwd="/tmp"))
    assert result.stdout == "1 /home/user\n/tmp\nuser\n"
    assert (await maybe(sandbox.commands.run("whoami", user="root"))).stdout == "root\n"


async def test_non_zero_exit(sandbox):
    with pytest.raises(CommandExitError) as info:
        await maybe(sandbox.commands.run("echo partial; echo bad >&2; exit 3"))
    assert (info.value.exit_code, info.value.stdout, info.value.stderr) == (3, "partial\n", "bad\n")
    result = await maybe(sandbox.commands.run("exit 4", check=False))
    assert (result.exit_code, result.success) == (4, False)


async def test_streaming_callbacks(sandbox, surface):
    seen = []
    if surface == "async":
        async def on_stdout(text):
            seen.append(("out", text))
    else:
        def on_stdout(text):
            seen.append(("out", text))
    await maybe(sandbox.commands.run("echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c", on_stdout=on_stdout,
                                     on_stderr=lambda text: seen.append(("err", text))))
    assert seen == [("out", "a\n"), ("err", "b\n"), ("out", "c\n")]


async def test_output_is_decoded_across_chunks(sandbox):
    result = await maybe(sandbox.commands.run(r"printf '\xe2\x82'; sleep 0.2; printf '\xac\n'"))
    assert result.stdout == "€\n"
    big = await maybe(sandbox.commands.run("head -c 2000000 /dev/zero | tr '\\0' a"))
    assert big.stdout == "a" * 2_000_000


async def test_background_iterate_wait(sandbox):
    handle = await maybe(sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 0.1; done", background=True))
    assert handle.pid > 0
    chunks = await collect(handle)
    assert "".join(out for out, _, _ in chunks if out) == "1\n2\n3\n"
    result = await maybe(handle.wait())
    assert result.stdout == "1\n2\n3\n" and handle.exit_code == 0


async def test_background_list_connect_kill(sandbox):
    handle = await maybe(sandbox.commands.run("sleep 0.5; echo late; sleep 60", background=True))
    assert handle.pid in [p.pid for p in await maybe(sandbox.commands.list())]
    attached = await maybe(sandbox.commands.connect(handle.pid))
    assert await eventually(lambda: "late" in attached.stdout)
    assert await maybe(handle.kill()) is True
    with pytest.raises(CommandExitError):
        await maybe(handle.wait())
    assert await maybe(sandbox.commands.kill(handle.pid)) is False
    with pytest.raises(NotFound):
        await maybe(sandbox.commands.connect(handle.pid))


async def test_tags_get_process_and_replayed_output(sandbox):
    handle = await maybe(sandbox.commands.run("echo early; sleep 60", background=True, tag="web"))
    info = await maybe(sandbox.commands.get_process("web"))
    assert info is not None and info.pid == handle.pid and info.tag == "web"
    assert await maybe(sandbox.commands.get_process("nosuch")) is None
    await eventually(lambda: "early" in handle.stdout)
    attached = await maybe(sandbox.commands.connect("web"))  # by tag; it prints nothing new
    assert await eventually(lambda: attached.stdout == "early\n")
    assert await maybe(handle.kill()) is True


async def test_wait_for_log_and_port_on_a_handle(sandbox):
    server = await maybe(sandbox.commands.run(
        "sleep 0.5; echo 'ready on 8123' >&2; exec python3 -m http.server 8123 --bind 127.0.0.1",
        background=True))
    t = time.monotonic()
    m = await maybe(server.wait_for_log(r"ready on (\d+)", timeout=20))
    assert m.group(1) == "8123" and time.monotonic() - t >= 0.4
    await maybe(server.wait_for_port(8123, timeout=20))
    out = await maybe(sandbox.commands.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8123/"))
    assert out.stdout == "200"
    with pytest.raises(TimeoutError):
        await maybe(server.wait_for_log("never printed", timeout=0.5))
    await maybe(server.kill())
    quick = await maybe(sandbox.commands.run("echo bye", background=True))
    with pytest.raises(CommandExitError):
        await maybe(quick.wait_for_log("hello", timeout=10))
    raw = await maybe(sandbox.commands.run("echo hello; sleep 30", background=True, raw=True))
    with pytest.raises(InvalidArgument, match="raw=True"):  # it keeps no text to search: no silent wait
        await maybe(raw.wait_for_log("hello", timeout=10))
    assert await maybe(raw.kill()) is True


async def test_stdin(sandbox):
    handle = await maybe(sandbox.commands.run("cat; echo done", background=True, stdin=True))
    await maybe(handle.send_stdin("hello "))
    await maybe(sandbox.commands.send_stdin(handle.pid, b"world\n"))
    await maybe(sandbox.commands.close_stdin(handle.pid))
    assert (await maybe(handle.wait())).stdout == "hello world\ndone\n"


async def test_timeout_kills_the_command(sandbox):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="within 1s"):
        await maybe(sandbox.commands.run("sleep 30", timeout=1))
    assert time.monotonic() - started < 10
    assert await eventually(lambda: _no_sleep(sandbox))


async def _no_sleep(sandbox):
    return all("sleep 30" not in " ".join(p.args) for p in await maybe(sandbox.commands.list()))
