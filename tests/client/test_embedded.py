"""With no server configured, the SDK runs one for the process: `pip install sandlot` and go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support import TEMPLATE_CACHE


@pytest.fixture
def clean_env(tmp_path):
    """A fresh environment without SANDLOT_API_URL; SANDLOT_HOME shares the test template cache so the
    embedded server does not build `base` again."""
    home = tmp_path / "home"
    home.mkdir()
    TEMPLATE_CACHE.mkdir(parents=True, exist_ok=True)
    (home / "templates").symlink_to(TEMPLATE_CACHE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDLOT_")}
    return {**env, "SANDLOT_HOME": str(home)}


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_sandbox_without_configuration(clean_env):
    script = textwrap.dedent("""
        from sandlot import Sandbox
        from sandlot import embedded as _embedded

        with Sandbox.create() as s:
            print(s.commands.run("echo hi").stdout, end="")
        print(_embedded._server.proc.pid, _embedded._server.home)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=clean_env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    hello, server = done.stdout.splitlines()
    assert hello == "hi"
    pid, home = server.split()
    assert _gone(int(pid)), "the embedded server outlived its process"
    assert not Path(home).exists()


def test_server_stops_when_its_parent_is_killed(clean_env):
    script = textwrap.dedent("""
        import time
        from sandlot.embedded import embedded_server
        server = embedded_server()
        print(server.proc.pid, server.home, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], env=clean_env, stdout=subprocess.PIPE, text=True)
    try:
        pid, home = parent.stdout.readline().split()
    finally:
        parent.send_signal(signal.SIGKILL)  # no atexit: the server's watchdog must notice
        parent.wait()
    assert _gone(int(pid))
    assert not Path(home).exists()  # the server removed its private state itself
