"""With no server configured, the SDK runs one for the process: `pip install sandlot` and go."""

from __future__ import annotations

import hashlib
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
    assert server_leftovers(Path(home)) == []  # no directory, process, mount or cgroup


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
    assert server_leftovers(Path(home)) == []  # the server removed its private state itself


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(f"{cmdline.parent.name}: {args.strip()}")
    return found


def server_leftovers(home: Path) -> list[str]:
    """What a server on `home` may leave: the directory, processes, mounts, cgroups."""
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]  # runtimes' name for its mounts, cgroups
    found = [str(home)] if home.exists() else []
    found += _processes_mentioning(str(home))
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if str(home) in line or f"/run/sandlot/{digest}/" in line]
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/sandlot-{digest}")]
    return found


@pytest.fixture
def unbuilt_env(tmp_path):
    """Like clean_env, with `base` built and `code-interpreter` not: a create of it must build it."""
    home = tmp_path / "home"
    (home / "templates").mkdir(parents=True)
    (home / "templates" / "base").symlink_to(TEMPLATE_CACHE / "base")
    (home / "cache").symlink_to(TEMPLATE_CACHE.parent / "cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDLOT_")}
    return {**env, "SANDLOT_HOME": str(home)}, home


def test_exit_while_a_template_builds_is_prompt_and_leaves_nothing(unbuilt_env):
    env, home = unbuilt_env
    script = textwrap.dedent("""
        import asyncio, pathlib
        from sandlot import AsyncSandbox, embedded

        async def main():
            try:  # a user who stops waiting (or presses Ctrl-C) while the template builds
                await asyncio.wait_for(AsyncSandbox.create(template="code-interpreter"), 8)
            except TimeoutError:
                pass

        asyncio.run(main())
        server = embedded._server
        workers = [p for p in pathlib.Path("/proc").glob("[0-9]*/cmdline")
                   if b"sandlot.templates.worker" in p.read_bytes() and str(server.home).encode() in p.read_bytes()]
        print(server.proc.pid, server.home, len(workers), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        ended = time.monotonic()
        proc.wait(60)
        exit_seconds = time.monotonic() - ended
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    pid, private_home, workers = line.split()
    assert int(workers) == 1, "the template was not being built when the script ended"
    assert "waiting for template code-interpreter to be built" in stderr  # the SDK shows progress
    assert exit_seconds < 10, f"exiting took {exit_seconds:.1f}s"
    assert _gone(int(pid), timeout=1)
    assert server_leftovers(Path(private_home)) == []
    # what the interrupted build leaves in the shared store has nothing mounted, no process working on it
    for partial in (home / "templates").glob(".new-*"):
        assert not _processes_mentioning(str(partial)) and str(partial) not in Path("/proc/self/mountinfo").read_text()
    assert not list((home / "templates").glob("code-interpreter"))
