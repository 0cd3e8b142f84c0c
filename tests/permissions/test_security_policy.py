"""Alphora's SecurityPolicy knobs as sandlot enforces them (runtimes/policy.py): no shell, no
subprocesses (seccomp, the agent not starting processes for callers inside), read-only, blocked
paths, output size, blocked imports (advisory), audit; strict()/permissive() and Limits presets."""

from __future__ import annotations

import json

import httpx
import pytest
from perm_helpers import W
from support import denials, wait_until

from sandlot import FileType, InvalidArgument, Limits, PermissionDenied, Sandbox, SecurityPolicy


@pytest.fixture(scope="module")
def make(conn, codebase):  # codebase first: it goes after these sandboxes
    made = []

    def make_one(**kwargs) -> Sandbox:
        sandbox = Sandbox.create(**conn, **kwargs)
        made.append(sandbox)
        return sandbox

    yield make_one
    for sandbox in made:
        sandbox.kill()


def test_no_shell(make):
    sandbox = make(security=SecurityPolicy(allow_shell=False))
    with pytest.raises(PermissionDenied, match="bash"):
        sandbox.commands.run("echo hi")
    with pytest.raises(PermissionDenied):
        sandbox.session()
    assert sandbox.files.get_info("/usr/bin/bash").type != FileType.FILE  # masked by a device node


AGENT_REQUEST = r"""
import json, socket, struct
s = socket.socket(socket.AF_UNIX); s.connect("/run/sandlot/agent.sock")
body = json.dumps({"op": "process.start", "cmd": "/usr/bin/id", "args": [], "envs": {}}).encode()
s.sendall(b"J" + struct.pack(">I", len(body)) + body)
head = s.recv(5); print(s.recv(struct.unpack(">I", head[1:])[0]).decode())
"""


def test_no_subprocesses(make):
    sandbox = make(security={"allow_subprocess": False})
    assert sandbox.commands.run("echo one program").stdout == "one program\n"
    assert sandbox.commands.run("echo a | cat", check=False).exit_code != 0  # a pipeline forks
    forked = sandbox.commands.run("python3 -c 'import os; os.fork()'", check=False)
    assert forked.exit_code != 0 and "PermissionError" in forked.stderr
    spawned = sandbox.commands.run("python3 -c 'import subprocess; subprocess.run([\"true\"])'", check=False)
    assert spawned.exit_code != 0 and "PermissionError" in spawned.stderr
    threads = sandbox.commands.run("python3 -c 'import threading; t = threading.Thread(target=print, args=(7,)); "
                                   "t.start(); t.join()'")
    assert threads.stdout == "7\n"  # threads are not processes
    assert sandbox.commands.run("sudo true", check=False).exit_code != 0
    with pytest.raises(PermissionDenied):
        sandbox.session()
    # a process inside, root included, cannot ask the agent to start one for it
    sandbox.files.write("/tmp/ask.py", AGENT_REQUEST)
    for user in ("user", "root"):
        reply = json.loads(sandbox.commands.run("python3 /tmp/ask.py", user=user).stdout)
        assert reply["error"]["code"] == "permission_denied", reply
    assert sandbox.commands.run("echo still works").stdout == "still works\n"  # sandlot itself starts them


def test_read_only(make, codebase):
    sandbox = make(security={"allow_file_write": False}, codebase=codebase, preset="full-access")
    assert sandbox.commands.run("echo x > /home/user/f", check=False).exit_code != 0
    with pytest.raises(PermissionDenied):
        sandbox.files.write("/home/user/f", "x")
    with pytest.raises(PermissionDenied):
        sandbox.files.write(f"{W}/main.py", "x")
    assert sandbox.commands.run(f"cat {W}/main.py").exit_code == 0
    assert sandbox.commands.run("echo scratch > /tmp/f && cat /tmp/f").stdout == "scratch\n"  # /tmp stays


def test_blocked_paths(make, codebase):
    sandbox = make(codebase=codebase, preset="full-access",
                   security={"blocked_paths": ["/etc/shadow", "/usr/share/doc", f"{W}/docs"]})
    for path in ("/etc/shadow", "/usr/share/doc", "/usr/share/doc/bash", f"{W}/docs", f"{W}/docs/guide.md"):
        for user in ("user", "root"):
            assert sandbox.commands.run(f"stat {path}", user=user, check=False).exit_code != 0, (path, user)
    assert "shadow" not in sandbox.commands.run("ls /etc", user="root").stdout.split()
    assert sandbox.commands.run("cat /etc/passwd").exit_code == 0


@pytest.mark.parametrize("bad", [{"blocked_paths": ["/proc"]}, {"blocked_paths": ["relative"]},
                                 {"blocked_paths": ["/"]}, {"max_output_size": 10}, {"blocked_imports": ["no such"]},
                                 {"allow_shell": "no"}, {"colour": True}])
def test_bad_policies_are_refused(server, bad):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}) as http:
        r = http.post("/v2/sandboxes", json={"templateID": "base", "security": bad})
    assert r.status_code == 400, r.text


def test_bad_blocked_path_through_a_symlink_is_explained(conn):
    with pytest.raises(InvalidArgument, match="symbolic link"):
        Sandbox.create(security={"blocked_paths": ["/bin/ls"]}, **conn)  # /bin -> usr/bin


def test_output_cap(make):
    sandbox = make(security=SecurityPolicy(max_output_size=4096))
    out = sandbox.commands.run("head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail").stdout
    assert out.startswith("x" * 4096) and len(out) < 4096 + 200 and "max_output_size" in out
    assert "tail" not in out
    session = sandbox.session()
    out = session.exec("head -c 100000 /dev/zero | tr '\\0' y").stdout
    assert out.startswith("y" * 4096) and len(out) < 4096 + 200


def test_blocked_imports_are_advisory(make):
    sandbox = make(security=SecurityPolicy(blocked_imports=("subprocess", "os.system")))
    blocked = sandbox.commands.run("python3 -c 'import subprocess'", check=False)
    assert blocked.exit_code != 0 and "blocked_imports" in blocked.stderr
    system = sandbox.commands.run("python3 -c 'import os; os.system(\"true\")'", check=False)
    assert system.exit_code != 0 and "blocked_imports" in system.stderr
    assert sandbox.commands.run("python3 -c 'import shutil, json; print(1)'").stdout == "1\n"  # libraries still can
    # advisory: nothing stops a determined program
    around = sandbox.commands.run("python3 -c 'import importlib; importlib.import_module(\"subprocess\"); print(2)'")
    assert around.stdout == "2\n"


def test_audit_can_be_switched_off(server, make, codebase):
    quiet = make(codebase=codebase, preset="agent-safe", security={"audit_enabled": False})
    audited = make(codebase=codebase, preset="agent-safe")
    for sandbox in (quiet, audited):
        sandbox.commands.run(f"cat {W}/.env", check=False)

    # the quiet one's denial would be in by then too
    wait_until(lambda: denials(server, audited.sandbox_id), message="the audited sandbox's denial")
    assert denials(server, quiet.sandbox_id) == []
    assert not [e for e in quiet.get_logs() if e.fields.get("logger") == "permfs"]


def test_strict_on_a_code_interpreter(make):
    sandbox = make(template="code-interpreter", security=SecurityPolicy.strict())
    assert sandbox.run_code("21 * 2").text == "42"
    assert "blocked_imports" in sandbox.run_code("import os").error.value
    assert sandbox.run_code("import json; json.loads('[1]')[0] + 1").text == "2"
    with pytest.raises(PermissionDenied):
        sandbox.commands.run("true")  # no shell


def test_policy_and_limit_presets():
    assert SecurityPolicy.permissive() == SecurityPolicy()
    strict = SecurityPolicy.strict()
    assert not strict.allow_shell and not strict.allow_subprocess and "socket" in strict.blocked_imports
    assert Limits.minimal().memory_mb < Limits.standard().memory_mb < Limits.high_performance().memory_mb
    assert Limits.standard() == Limits()
    for preset in (Limits.minimal(), Limits.high_performance()):
        preset.validate()
