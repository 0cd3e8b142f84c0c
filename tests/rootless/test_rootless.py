"""The rootless runtime end to end: `sandlot serve` run by an ordinary user, the e2b SDK and REST."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from e2b import AuthenticationException, CommandExitException, PtySize, Sandbox, SandboxException
from host_resources import pid_namespace_members
from rootless_support import remove_home, start_rootless_server

import sandlot
from sandlot.runtimes.rootless import PER_USERNS_NPROC

FORK_COUNT = """
import os, time
n = 0
try:
    while n < {most}:
        if os.fork() == 0:
            time.sleep({hold})
            os._exit(0)
        n += 1
except BlockingIOError:
    pass
print(n)
"""


def _fail(sbx: Sandbox, cmd: str) -> CommandExitException:
    with pytest.raises(CommandExitException) as exc:
        sbx.commands.run(cmd)
    return exc.value


def _state(server, sandbox_id: str) -> dict:
    return json.loads((server.home / "sandboxes" / sandbox_id / "state.json").read_text())




def _mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_server_warns_what_is_degraded(rl_server, api):
    assert api.get("/_sandlot/health").json()["status"] == "ok"
    warnings = [line for line in rl_server.log.read_text().splitlines() if "WARNING" in line]
    text = "\n".join(warnings)
    for expected in ("DEGRADED ISOLATION: not root: every sandbox runs as your host uid",
                     "no cgroups", "RLIMIT_DATA", "CPU is not limited", "pause/resume is unavailable",
                     "RLIMIT_NPROC", "RLIMIT_FSIZE", "no 'root' account", "read-only root filesystem"):
        assert expected in text, text


def test_commands_and_files_as_user(make_sandbox):
    sbx = make_sandbox()
    assert sbx.commands.run("echo hello").stdout == "hello\n"
    assert sbx.commands.run("whoami").stdout.strip() == "user"
    sbx.files.write("/home/user/notes.txt", "written by the SDK\n")
    assert sbx.files.read("/home/user/notes.txt") == "written by the SDK\n"
    assert sbx.commands.run("cat ~/notes.txt; echo more >> ~/notes.txt").stdout == "written by the SDK\n"
    assert sbx.files.read("/home/user/notes.txt").endswith("more\n")
    assert sbx.commands.run("echo t > /tmp/t && cat /tmp/t").stdout == "t\n"


def test_no_server_environment_reaches_the_sandbox(rl_server, make_sandbox):
    # here every process inside, bwrap's included, runs as `user`, who may read their environ
    sbx = make_sandbox()
    out = sbx.commands.run("for f in /proc/[0-9]*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; done").stdout
    assert "== /proc/1/environ" in out, out
    assert rl_server.api_key not in out and "SANDLOT_" not in out, out


def test_root_filesystem_is_read_only(make_sandbox):
    sbx = make_sandbox()
    for path in ("/usr/x", "/etc/x", "/x", "/opt/x", "/run/x", "/dev/x"):
        assert "Read-only file system" in _fail(sbx, f"touch {path}").stderr
    with pytest.raises(Exception) as exc:
        sbx.files.write("/usr/x", "x")
    assert "read-only" in str(exc.value).lower() or "permission" in str(exc.value).lower()


def test_no_root_inside(make_sandbox):
    sbx = make_sandbox()
    with pytest.raises(AuthenticationException, match="user 'root' does not exist"):
        sbx.commands.run("id", user="root")
    with pytest.raises(AuthenticationException, match="user 'root' does not exist"):
        sbx.files.write("/home/user/by-root", "x", user="root")
    assert not sbx.files.exists("/home/user/by-root")
    assert "sudo is not allowed" in _fail(sbx, "sudo id").stderr
    status = sbx.commands.run("grep -E '^Cap(Prm|Eff|Bnd)|NoNewPrivs|Seccomp:' /proc/self/status").stdout
    assert "CapEff:\t0000000000000000" in status and "CapBnd:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status


def test_a_sandbox_cannot_redirect_the_server_to_another_sandbox(rl_server, make_sandbox):
    victim, attacker = make_sandbox(), make_sandbox()
    victim.files.write("/home/user/secret", "victim's")
    # every sandbox runs as the same host uid, so it may replace its agent's socket with a symlink
    other = rl_server.home / "sandboxes" / victim.sandbox_id / "run" / "agent.sock"
    attacker.commands.run(f"rm /run/sandlot/agent.sock && ln -s {other} /run/sandlot/agent.sock")
    # the server still reaches the attacker's own agent, and only it
    assert not attacker.files.exists("/home/user/secret")
    assert "No such file" in _fail(attacker, "cat ~/secret").stderr
    assert victim.files.read("/home/user/secret") == "victim's"


def test_memory_bomb_fails_inside_and_the_server_keeps_serving(make_sandbox, api):
    sbx = make_sandbox(memory_mb=64)
    bomb = _fail(sbx, "python3 -c 'x = []\nwhile True: x.append(bytearray(1 << 20))'")
    assert "MemoryError" in bomb.stderr
    assert "No space left" in _fail(sbx, "head -c 100M /dev/zero > /dev/shm/fill").stderr
    assert sbx.commands.run("echo alive").stdout == "alive\n"
    assert api.get("/_sandlot/health").json()["status"] == "ok"
    assert make_sandbox().commands.run("echo other").stdout == "other\n"


def test_file_size_limit(make_sandbox):
    sbx = make_sandbox(disk_mb=16)
    assert "File size limit exceeded" in _fail(sbx, "head -c 20M /dev/zero > ~/big").stderr  # SIGXFSZ
    with pytest.raises(Exception, match="(?i)too large"):
        sbx.files.write("/home/user/big", b"x" * (17 << 20))
    assert sbx.commands.run("echo alive").stdout == "alive\n"


@pytest.mark.skipif(not PER_USERNS_NPROC, reason="before Linux 5.14 RLIMIT_NPROC counts per host uid")
def test_process_limit_is_per_sandbox(make_sandbox):
    small, other = make_sandbox(pids=32), make_sandbox()
    # returns once the parent exits; its children keep every process slot of the sandbox for 30 s
    forked = int(small.commands.run(f"python3 -c '{FORK_COUNT.format(most=1000, hold=30)}'").stdout)
    assert 0 < forked < 32
    # the other sandbox runs as the same host uid and is not affected
    assert int(other.commands.run(f"python3 -c '{FORK_COUNT.format(most=60, hold=2)}'").stdout) == 60


def test_metrics_and_no_pause(make_sandbox, api, rl_server):
    sbx = make_sandbox()
    sbx.commands.run("head -c 3M /dev/urandom > ~/blob")
    metrics = api.get(f"/sandboxes/{sbx.sandbox_id}/metrics").json()[-1]
    assert metrics["memUsed"] > 1_000_000 and metrics["diskUsed"] >= 3 * 1024 * 1024
    r = api.post(f"/sandboxes/{sbx.sandbox_id}/pause")
    assert r.status_code == 501, r.text  # not a failure of the server: it cannot pause at all
    assert r.json() == {"code": 501, "message": r.json()["message"]} and "needs cgroups" in r.json()["message"]
    with pytest.raises(SandboxException, match="501.*needs cgroups"):  # not "already paused" (409)
        sbx.pause()
    with pytest.raises(sandlot.Unsupported, match="needs cgroups"):
        sandlot.Sandbox.connect(sbx.sandbox_id, api_url=rl_server.url, api_key=rl_server.api_key).pause()
    assert api.get(f"/sandboxes/{sbx.sandbox_id}").json()["state"] == "running"
    assert sbx.commands.run("echo still running").exit_code == 0


def test_base_template_needs_root(api):
    r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
    assert r.status_code >= 400 and "root" in r.json()["message"], r.text
    assert api.get("/_sandlot/health").json()["status"] == "ok"


def test_kill_leaves_no_processes_and_no_directories(rl_server, make_sandbox):
    sbx = make_sandbox()
    sbx.commands.run("sleep 1000", background=True)
    sbx.commands.run("nohup sleep 1000 >/dev/null 2>&1 & mkdir -p ~/locked/deep && touch ~/locked/deep/f && "
                     "chmod 000 ~/locked/deep && chmod 500 ~/locked")
    state = _state(rl_server, sbx.sandbox_id)
    # held open: the kernel reuses the names of namespaces that are gone (another sandbox's)
    ns_fd = os.open(f"/proc/{state['child_pid']}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    ns = os.readlink(f"/proc/self/fd/{ns_fd}")
    assert len(pid_namespace_members(ns)) >= 3  # the agent as init, two sleeps
    sbx.kill()
    assert pid_namespace_members(ns) == []
    os.close(ns_fd)
    assert _mentioning(str(rl_server.home / "sandboxes" / sbx.sandbox_id)) == []
    assert not (rl_server.home / "sandboxes" / sbx.sandbox_id).exists()


def test_sandboxes_survive_a_server_restart(account, monkeypatch):
    home = account.make_home()
    server = start_rootless_server(account, home)
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        sbx = Sandbox.create("host")
        sbx.files.write("/home/user/kept", "before the restart")
        server.stop(signal.SIGKILL)  # sandboxes outlive their server (no --die-with-parent)
        server = start_rootless_server(account, home, port=int(server.url.rsplit(":", 1)[1]))
        assert Sandbox.connect(sbx.sandbox_id).files.read("/home/user/kept") == "before the restart"
        assert "adopted sandbox" in server.log.read_text()
        Sandbox.connect(sbx.sandbox_id).kill()
        assert list((home / "sandboxes").iterdir()) == []
    finally:
        server.stop()
        remove_home(home)


def test_terminal(make_sandbox):
    sbx = make_sandbox()
    term = sbx.pty.create(size=PtySize(rows=24, cols=80))
    output = bytearray()
    reader = threading.Thread(target=lambda: term.wait(on_pty=output.extend), daemon=True)
    reader.start()
    sbx.pty.send_stdin(term.pid, b"tty; echo done-$((6*7)); exit\n")
    reader.join(10)
    assert b"/dev/pts/0" in output and b"done-42" in output
