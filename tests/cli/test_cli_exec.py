"""`sandlot exec`: options after the id, exit code 124 on a timeout, raw bytes to a pipe and
filtered output to a terminal (the CLI run as a real process, on a pipe and on a pty)."""

from __future__ import annotations

import os
import pty
import subprocess
import time

import pytest

from sandlot import Sandbox
from support import REPO

SANDLOT = str(REPO / ".venv" / "bin" / "sandlot")
# what a hostile sandbox prints: a clipboard write (OSC 52), a title, a link (OSC 8), a status
# report request (the terminal would type its answer into the operator's prompt), colour, text
HOSTILE = (r"printf 'a\033]52;c;aGFja2Vk\007b\033]0;title\007c\033]8;;http://x\033\\link\033]8;;\033\\ "
           r"\033[6n\033[31mred\033[0m\n'")


@pytest.fixture
def env(server):
    return {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}


@pytest.fixture
def sandbox_id(server):
    sbx = Sandbox.create(api_url=server.url, api_key=server.api_key)
    yield sbx.sandbox_id
    sbx.kill()


def sandlot(env, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([SANDLOT, *args], env=env, input=input, capture_output=True, timeout=timeout)


def in_terminal(env, *args: str) -> tuple[bytes, int]:
    """Run the CLI with a pty as its stdin, stdout and stderr; all it wrote, and its exit code."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(SANDLOT, [SANDLOT, *args], env)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return bytes(seen), os.waitstatus_to_exitcode(status)


def test_options_after_the_id(env, sandbox_id):
    started = time.monotonic()
    timed_out = sandlot(env, "exec", sandbox_id, "--timeout", "1", "--", "sleep", "3")
    assert timed_out.returncode == 124, timed_out.stderr  # as timeout(1)
    assert b"did not finish within 1s" in timed_out.stderr and time.monotonic() - started < 10
    assert sandlot(env, "exec", sandbox_id, "--cwd", "/tmp", "pwd").stdout == b"/tmp\n"
    assert sandlot(env, "exec", sandbox_id, "-e", "A=1", "--cwd=/etc", "--", "sh", "-c",
                   "echo $A $PWD").stdout == b"1 /etc\n"
    # the command starts at the first word that is no option: its own options stay its own
    assert sandlot(env, "exec", sandbox_id, "printf", "%s", "--cwd").stdout == b"--cwd"
    assert sandlot(env, "exec", sandbox_id, "--timeout", "5", "echo", "-n", "x").stdout == b"x"
    # a command that does end in time keeps its own exit code
    assert sandlot(env, "exec", sandbox_id, "--timeout", "5", "--", "sh", "-c", "exit 7").returncode == 7


def test_piped_output_is_the_bytes_written(env, sandbox_id):
    ran = sandlot(env, "exec", sandbox_id, r"printf 'bin\377\000\033]52;c;aGk=\007' ; printf 'e\376' >&2")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, b"bin\xff\x00\x1b]52;c;aGk=\x07", b"e\xfe")


def test_a_terminal_gets_no_escape_sequences_but_colours(env, sandbox_id):
    seen, code = in_terminal(env, "exec", sandbox_id, HOSTILE)
    assert code == 0
    assert b"abc" in seen and b"link" in seen and b"\x1b[31mred\x1b[0m" in seen
    for sequence in (b"\x1b]", b"\x1b[6n", b"aGFja2Vk", b"title"):
        assert sequence not in seen, seen
    # stderr too
    seen, _ = in_terminal(env, "exec", sandbox_id, HOSTILE + " >&2")
    assert b"\x1b]" not in seen and b"\x1b[31mred" in seen
    # asked for: passed as it is
    seen, _ = in_terminal(env, "exec", sandbox_id, "--raw", HOSTILE)
    assert b"\x1b]52;c;aGFja2Vk\x07" in seen and b"\x1b[6n" in seen
