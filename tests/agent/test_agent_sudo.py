"""The sudo shim end to end: argv, fds, env, users, exit status and signals through the agent."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time

import pytest
from agent_support import AGENT_DIR, AGENT_PYTHON, pid_alive

SHIM = str(AGENT_DIR / "sudo_shim.py")


@functools.cache
def shim_python(uid: int) -> str:
    """The agent's python if ``uid`` may run it (not one in root's home), else the system's."""
    try:
        subprocess.run([AGENT_PYTHON, "-S", "-c", ""], user=uid, check=True)
        return AGENT_PYTHON
    except (OSError, subprocess.CalledProcessError):
        return "/usr/bin/python3"


def sudo(agent, *args, as_user=None, input=None, env=None, cwd="/", popen=False):
    kwargs = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                  env={"PATH": "/usr/bin:/bin", "SANDLOT_AGENT_SOCKET": agent.socket, **(env or {})})
    if as_user is not None:
        kwargs.update(user=as_user.pw_uid, group=as_user.pw_gid)
    argv = [shim_python(as_user.pw_uid if as_user else 0), "-S", SHIM, *args]
    if popen:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kwargs)
    if input is None:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run(argv, input=input, timeout=20, **kwargs)


def test_runs_the_command_as_root_with_the_callers_fds(agent, user):
    done = sudo(agent, "sh", "-c", "id -u; cat; echo to-stderr >&2; exit 7", as_user=user, input=b"from stdin\n")
    assert done.returncode == 7
    assert done.stdout == b"0\nfrom stdin\n"
    assert done.stderr == b"to-stderr\n"


def test_environment_is_reset_unless_preserved(agent, user, home):
    code = "echo $HOME $USER $SUDO_USER $SUDO_UID $MINE; pwd"
    env = {"MINE": "kept?", "TERM": "xterm"}
    plain = sudo(agent, "sh", "-c", code, as_user=user, env=env, cwd=str(home))
    assert plain.stdout.decode().splitlines() == [f"/root root {user.pw_name} {user.pw_uid}", str(home)]
    kept = sudo(agent, "-E", "sh", "-c", code, as_user=user, env=env, cwd=str(home))
    assert kept.stdout.decode().split()[-2] == "kept?"
    inline = sudo(agent, "MINE=inline", "sh", "-c", "echo $MINE $TERM", as_user=user, env=env)
    assert inline.stdout == b"inline xterm\n"


def test_other_user_login_and_shell(agent, user):
    assert sudo(agent, "-u", user.pw_name, "id", "-un").stdout.decode().strip() == user.pw_name
    assert sudo(agent, f"--user={user.pw_name}", "id", "-u").stdout.decode().strip() == str(user.pw_uid)
    login = sudo(agent, "-i", "echo", "$HOME", as_user=user)
    assert login.stdout.decode().split() == ["/root"]
    assert sudo(agent, "-i", "pwd", as_user=user).stdout.decode().strip() == "/root"
    assert sudo(agent, "-s", "echo", "a  b", as_user=user).stdout == b"a  b\n"
    assert sudo(agent, "-n", "true", as_user=user).returncode == 0


def test_failures_are_reported_like_sudo(agent, user):
    for args, message in ((["-u", "nobody-here", "true"], b"user 'nobody-here' does not exist"),
                          (["no-such-command"], b"no-such-command"),
                          ([], b"usage:"),
                          (["-Z", "true"], b"invalid option")):
        done = sudo(agent, *args, as_user=user)
        assert done.returncode == 1, args
        assert done.stderr.startswith(b"sudo: ") and message in done.stderr, done.stderr
    for args in (["-v"], ["-k"], ["-l"], ["-h"]):
        assert sudo(agent, *args, as_user=user).returncode == 0, args


def test_signals_are_forwarded(agent, user):
    shim = sudo(agent, "sh", "-c", "echo $$; exec sleep 600", as_user=user, popen=True)
    try:
        pid = int(shim.stdout.readline())
        shim.send_signal(signal.SIGTERM)
        assert shim.wait(10) == -signal.SIGTERM  # dies of the command's signal, as sudo does
        deadline = time.monotonic() + 20  # generous for a loaded host: the command would run 600 s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pid_alive(pid)
    finally:
        shim.kill()
        shim.wait()


def _assert_a_killed_shim_hangs_up(agent, user) -> None:
    shim = sudo(agent, "sh", "-c", "echo $$; exec sleep 600", as_user=user, popen=True)
    pid = int(shim.stdout.readline())
    shim.kill()
    shim.wait()
    deadline = time.monotonic() + 20  # generous for a loaded host: the command would run 600 s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(pid)


def test_a_killed_shim_hangs_up_on_its_command(agent, user):
    _assert_a_killed_shim_hangs_up(agent, user)


def test_refused_when_the_sandbox_disallows_it(make_agent, user):
    closed = make_agent(allow_sudo=False)
    done = sudo(closed, "id", as_user=user)
    assert done.returncode == 1
    assert done.stderr == b"sudo: sudo is not allowed in this sandbox\n"


def test_other_users_may_only_ask_for_sudo(agent, user):
    probe = ("import json, socket, struct, sys\n"
             "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
             "body = json.dumps({'op': sys.argv[2], 'cmd': '/bin/true'}).encode()\n"
             "s.sendall(struct.pack('>cI', b'J', len(body)) + body)\n"
             "print(s.recv(1000)[5:].decode())\n")
    for op, expected in (("process.start", "permission_denied"), ("files.stat", "permission_denied"),
                         ("ping", '"ok":true')):
        out = subprocess.run([shim_python(user.pw_uid), "-S", "-c", probe, agent.socket, op], capture_output=True,
                             user=user.pw_uid, group=user.pw_gid, timeout=10, check=True).stdout.decode()
        assert expected in out, (op, out)


@pytest.mark.parametrize("flag", ["-E", "-H"])
def test_harmless_flags_are_accepted(agent, user, flag):
    assert sudo(agent, flag, "true", as_user=user).returncode == 0


def test_shim_is_executable_with_a_python_shebang():
    with open(SHIM) as f:
        assert f.readline() == "#!/usr/bin/python3 -S\n"
    assert os.access(SHIM, os.X_OK)


def test_a_hang_up_reaches_the_command_of_an_agent_started_with_sighup_ignored(make_agent, user):
    """An ignored SIGHUP is inherited through exec: a server started under nohup passed it to its
    agents, and on to every command, so a killed shim's command never hung up."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        agent = make_agent()
    finally:
        signal.signal(signal.SIGHUP, before)
    _assert_a_killed_shim_hangs_up(agent, user)
