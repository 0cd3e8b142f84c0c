"""`sandlot shell`: a real terminal (a pty) drives the CLI in a subprocess."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

import pytest

from sandlot import Sandbox
from support import REPO

SANDLOT = str(REPO / ".venv" / "bin" / "sandlot")


@pytest.fixture
def sandbox_id(server):
    sbx = Sandbox.create(api_url=server.url, api_key=server.api_key)
    yield sbx.sandbox_id
    sbx.kill()


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return needle in seen
            if not chunk:
                break
            seen.extend(chunk)
    return needle in seen


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_shell_in_a_terminal(server, sandbox_id):
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a 100x30 terminal
        _set_size(0, 100, 30)
        env = {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}
        os.execve(SANDLOT, [SANDLOT, "shell", sandbox_id], env)
    seen = bytearray()
    try:
        assert _read_until(fd, b"$ ", seen), seen.decode(errors="replace")
        os.write(fd, b"echo size=$(tput cols)x$(tput lines)\r")
        assert _read_until(fd, b"size=100x30", seen), seen.decode(errors="replace")
        _set_size(fd, 120, 40)  # the kernel sends the CLI SIGWINCH; it resizes the sandbox's terminal
        time.sleep(0.5)
        os.write(fd, b"echo size=$(tput cols)x$(tput lines)\r")
        assert _read_until(fd, b"size=120x40", seen), seen.decode(errors="replace")
        os.write(fd, b"exit 3\r")
        _read_until(fd, b"never", seen, timeout=10)
        attrs = termios.tcgetattr(fd)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3
    assert attrs[3] & termios.ICANON and attrs[3] & termios.ECHO  # raw mode was undone


def test_shell_with_piped_input(server, sandbox_id):
    env = {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}
    done = subprocess.run([SANDLOT, "shell", sandbox_id], input=b"echo piped $((1+1))\nexit 2\n", env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert b"piped 2" in done.stdout
