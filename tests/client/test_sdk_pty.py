"""`sandbox.pty`: terminals, on both surfaces, in real sandboxes."""

from __future__ import annotations

from sdk_support import collect, eventually, maybe


async def test_terminal_session(sandbox):
    output = bytearray()
    term = await maybe(sandbox.pty.create(cols=80, rows=24, on_data=output.extend))
    await maybe(sandbox.pty.send_input(term.pid, "echo $((6*7)) $TERM\n"))
    assert await eventually(lambda: b"42 xterm-256color" in output)
    await maybe(sandbox.pty.resize(term.pid, cols=123, rows=40))
    await maybe(sandbox.pty.send_input(term.pid, b"echo size=$(tput cols)x$(tput lines); exit 7\n"))
    result = await maybe(term.wait())
    assert b"size=123x40" in output and result.exit_code == 7


async def test_kill_and_iterate(sandbox):
    output = bytearray()
    term = await maybe(sandbox.pty.create(cwd="/tmp", on_data=output.extend))
    await maybe(term.send_stdin(b"pwd\n"))  # a PTY handle's stdin is the terminal
    assert await eventually(lambda: b"/tmp\r\n" in output)
    assert await maybe(sandbox.pty.kill(term.pid)) is True
    assert (await maybe(term.wait())).exit_code != 0
    assert await maybe(sandbox.pty.kill(term.pid)) is False
    chunks = await collect(term)  # iteration replays the output from the start
    assert b"".join(pty for _, _, pty in chunks) == bytes(output)
