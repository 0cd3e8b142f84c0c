"""`sandlot template build|list` on a state directory."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest
from typer.testing import CliRunner

from sandlot import Sandbox
from sandlot._exceptions import TemplateError
from sandlot.cli.main import app
from sandlot.templates import TemplateStore
from sandlot.templates.debootstrap import find_debootstrap
from support import TEMPLATE_CACHE, leftovers, server_cmd, start_server

runner = CliRunner()


def test_list_shows_the_shared_base(tmp_path):
    TEMPLATE_CACHE.mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates").symlink_to(TEMPLATE_CACHE)
    result = runner.invoke(app, ["template", "list", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "base" in result.stdout and "host" in result.stdout


def test_build_then_list(tmp_path):
    result = runner.invoke(app, ["template", "build", "host", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("built host")
    listed = runner.invoke(app, ["template", "list", "--home", str(tmp_path)])
    host = next(line for line in listed.stdout.splitlines() if line.strip().startswith("host"))
    assert "built" in host and "not built" not in host
    rootfs = tmp_path / "templates" / "host" / "rootfs"
    first = rootfs.stat().st_ino
    kept = runner.invoke(app, ["template", "build", "host", "--if-stale", "--home", str(tmp_path)])
    assert kept.exit_code == 0 and "up to date" in kept.stdout, kept.output
    assert rootfs.stat().st_ino == first  # up to date: left as it was
    again = runner.invoke(app, ["template", "build", "host", "--home", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert rootfs.stat().st_ino != first  # an explicit build rebuilds


def test_unknown_template(tmp_path):
    result = runner.invoke(app, ["template", "build", "nope", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "unknown template" in result.stderr


def _run_in_terminal(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `cmd` on a pseudo-terminal (so rich draws its progress bar) and return its exit code
    and everything it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
        return proc.wait(max(1.0, deadline - time.monotonic())), out.decode("utf-8", "replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(1200)  # a cold debootstrap: ~60 s here, part of the normal suite on purpose
def test_forced_rebuild_of_base_through_the_cli(tmp_path):
    """`sandlot template build base` on a home whose base is current rebuilds it anyway, drawing
    its progress bar, and sandboxes from the new one work (python3, sudo)."""
    if os.geteuid() != 0:
        pytest.skip("building base needs root")
    try:
        find_debootstrap()
    except TemplateError as e:
        pytest.skip(str(e))
    home = tmp_path / "home"
    (home / "templates").mkdir(parents=True)
    shared = TemplateStore(TEMPLATE_CACHE.parent)
    if shared.is_built("base"):  # start from a current base (a copy: the shared cache is never touched)
        subprocess.run(["cp", "-a", str(TEMPLATE_CACHE / "base"), str(home / "templates" / "base")], check=True)
        kept = subprocess.run([*server_cmd(), "template", "build", "base", "--if-stale", "--home", str(home)],
                              capture_output=True, text=True, timeout=120)
        assert kept.returncode == 0 and "up to date" in kept.stdout, kept
    store = TemplateStore(home)
    before = store.manifest("base")
    old_inode = (home / "templates" / "base" / "rootfs").stat().st_ino if before else None

    env = {**os.environ, "SANDLOT_HOME": str(home), "TERM": "xterm-256color"}
    code, output = _run_in_terminal([*server_cmd(), "template", "build", "base"], env, timeout=1100)
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)  # colours and cursor moves
    assert code == 0, output[-3000:]
    assert "built base in " in output and str(home / "templates" / "base" / "rootfs") in output, output[-2000:]
    # the bar: its title, percentages that grow, debootstrap's steps
    assert "template base" in output, output[-2000:]
    percents = [int(p) for p in re.findall(r"(\d{1,3})%", output)]
    assert len(set(percents)) >= 5 and max(percents) >= 90, percents[-20:]
    assert re.search(r"(unpacking|configuring|validating) \w", output), output[-2000:]

    after = store.manifest("base")
    assert store.is_built("base") and after["built_at"] != (before or {}).get("built_at"), after
    assert (home / "templates" / "base" / "rootfs").stat().st_ino != old_inode  # replaced, not kept
    assert not list((home / "templates").glob(".*-base-*"))  # no half-built or replaced tree left

    srv = start_server(home, pool_size=0, extra_env={"SANDLOT_POOL_TEMPLATES": ""})
    try:
        with Sandbox.create(timeout=120, api_url=srv.url, api_key=srv.api_key) as sbx:
            assert sbx.commands.run("python3 -c 'print(1)'").stdout == "1\n"
            assert sbx.commands.run("sudo id -u").stdout == "0\n"
            assert sbx.commands.run("id -u").stdout == "1000\n"
    finally:
        srv.stop()
    assert not leftovers(home)


@pytest.mark.timeout(900)  # ~40 s here: the wheels come from the shared cache, node from the mirror
def test_first_build_of_code_interpreter_through_the_cli(tmp_path):
    """`sandlot template build code-interpreter` on a home with only `base`: it is built on top of
    it with a progress bar, and its kernels run code, the data stack included."""
    if os.geteuid() != 0:
        pytest.skip("building templates needs root")
    shared = TemplateStore(TEMPLATE_CACHE.parent)
    if not shared.is_built("base"):
        pytest.skip("the shared base template is not built")
    home = tmp_path / "home"
    (home / "templates").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(TEMPLATE_CACHE / "base"), str(home / "templates" / "base")], check=True)
    # fetched wheels: shared, like a user's (the link may dangle on a fresh machine: the build makes it)
    (home / "cache").symlink_to(TEMPLATE_CACHE.parent / "cache")
    store = TemplateStore(home)
    assert not store.is_built("code-interpreter")

    env = {**os.environ, "SANDLOT_HOME": str(home), "TERM": "xterm-256color"}
    code, output = _run_in_terminal([*server_cmd(), "template", "build", "code-interpreter"], env, timeout=850)
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert code == 0, output[-3000:]
    assert "built code-interpreter in " in output, output[-2000:]
    assert "template code-interpreter" in output, output[-2000:]
    percents = [int(p) for p in re.findall(r"(\d{1,3})%", output)]
    assert len(set(percents)) >= 5 and max(percents) >= 90, percents[-20:]
    assert re.search(r"copying base|installing nodejs|fetching \S+\.whl", output), output[-2000:]
    assert store.is_built("code-interpreter")

    srv = start_server(home, pool_size=0, extra_env={"SANDLOT_POOL_TEMPLATES": ""})
    try:
        with Sandbox.create(template="code-interpreter", timeout=120, api_url=srv.url, api_key=srv.api_key) as sbx:
            assert sbx.run_code("1 + 1").text == "2"
            assert sbx.run_code("import pandas, sklearn; int(pandas.DataFrame({'a': [1, 2]}).a.sum())").text == "3"
            assert sbx.run_code("console.log(6 * 7)", language="javascript").logs.stdout == ["42\n"]
    finally:
        srv.stop()
    assert not leftovers(home)
