"""Interactive terminals through the official SDK: create with a size, input, resize, kill."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from e2b import AsyncSandbox, CommandExitException, PtySize, SandboxException
from support import wait_until


class Terminal:
    """A sync PTY handle drained by a thread, so the test can type and read."""

    def __init__(self, sandbox, **kwargs):
        self.sandbox = sandbox
        self.handle = sandbox.pty.create(**kwargs)
        self.pid = self.handle.pid
        self.output = bytearray()
        self.pos = 0
        self.result = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        try:
            self.result = self.handle.wait(on_pty=self.output.extend)
        except BaseException as e:  # noqa: BLE001 - inspected by the tests
            self.error = e

    def type(self, text: str) -> None:
        self.sandbox.pty.send_stdin(self.pid, text.encode())

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Wait for `pattern` (a regex) in the output after the previous match."""

        def found():
            return re.search(pattern.encode(), bytes(self.output[self.pos:]))

        try:
            match = wait_until(found, timeout=timeout, message=f"{pattern!r} in the terminal output")
        except AssertionError:
            raise AssertionError(f"{pattern!r} not in {bytes(self.output[self.pos:])[-800:]!r}") from None
        self.pos += match.end()
        return match

    def ended(self, timeout: float = 10.0) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def test_pty_echo_resize_and_kill(sandbox):
    term = Terminal(sandbox, size=PtySize(rows=24, cols=80))
    try:
        assert term.pid > 0
        assert term.pid in {p.pid for p in sandbox.commands.list()}
        term.type("echo hi-$((40+2))\n")
        term.expect(r"hi-42")  # the shell ran it: the typed line shows `$((40+2))`, only the output has 42
        term.type("echo size=$(stty size) term=$TERM; [ -t 0 ] && echo is-a-tty\n")
        term.expect(r"size=24 80 term=xterm")
        term.expect(r"is-a-tty")

        sandbox.pty.resize(term.pid, PtySize(rows=30, cols=123))
        term.type("echo cols=$(tput cols) lines=$(tput lines)\n")
        term.expect(r"cols=123 lines=30")
    finally:
        killed = sandbox.pty.kill(term.pid)
    assert killed is True
    assert term.ended(), "the PTY stream must end after kill"
    assert isinstance(term.error, CommandExitException), term.error
    assert wait_until(lambda: term.pid not in {p.pid for p in sandbox.commands.list()}, timeout=20,
                      message="killed PTY to leave the process list")
    assert sandbox.pty.kill(term.pid) is False


def test_pty_exit_code_user_cwd_envs(sandbox):
    term = Terminal(sandbox, size=PtySize(rows=10, cols=100), user="root", cwd="/tmp",
                    envs={"PTY_VAR": "from-envs"})
    term.type("echo \"$(whoami)|$(pwd)|$PTY_VAR\"\n")
    term.expect(r"root\|/tmp\|from-envs")
    term.type("exit 3\n")
    assert term.ended()
    assert isinstance(term.error, CommandExitException) and term.error.exit_code == 3


def test_pty_input_is_raw_bytes(sandbox):
    term = Terminal(sandbox, size=PtySize(rows=24, cols=80))
    try:
        term.type("cat > /tmp/pty-typed.txt\n")
        time.sleep(0.3)
        term.type("ünïcödé line\n")
        term.type("\x04")  # Ctrl-D ends cat
        term.type("echo written-$?\n")
        term.expect(r"written-0")
        assert sandbox.files.read("/tmp/pty-typed.txt") == "ünïcödé line\n"
        # Ctrl-C interrupts the foreground job, not the terminal
        term.type("sleep 30\n")
        time.sleep(0.5)
        term.type("\x03")
        term.type("echo after-ctrl-c\n")
        term.expect(r"after-ctrl-c", timeout=5)
    finally:
        sandbox.pty.kill(term.pid)


def test_pty_resize_of_unknown_pid_fails(sandbox):
    with pytest.raises(SandboxException):
        sandbox.pty.resize(999_999, PtySize(rows=10, cols=10))


async def test_async_pty(sandbox):
    sbx = await AsyncSandbox.connect(sandbox.sandbox_id)
    data = bytearray()
    handle = await sbx.pty.create(PtySize(rows=20, cols=60), on_data=data.extend)

    async def expect(text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in data:
            assert time.monotonic() < deadline, f"{text!r} not in {bytes(data)[-500:]!r}"
            await asyncio.sleep(0.05)

    await sbx.pty.send_stdin(handle.pid, b"echo async-$((6*7)) $(tput cols)\n")
    await expect("async-42 60")
    await sbx.pty.resize(handle.pid, PtySize(rows=20, cols=77))
    await sbx.pty.send_stdin(handle.pid, b"echo now-$(tput cols)\n")
    await expect("now-77")
    assert await sbx.pty.kill(handle.pid) is True
    with pytest.raises(CommandExitException):
        await asyncio.wait_for(handle.wait(), 10)
