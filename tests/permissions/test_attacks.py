"""Path permissions attacked from inside the sandbox, as `user` and as root: libc calls and raw
syscalls (ctypes), symlinks, hard links, renames into and out of protected paths, listings,
inotify, mmap and /proc/self/fd reopens, for each preset (kernel-enforced outcomes checked against
sandlot/permissions.py's decision for the same rules) and for custom rules, and live changes."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from perm_helpers import PROJECT, W, outcomes, probe
from support import denials, wait_until

from sandlot import permissions as P
from sandlot.permfs.workspace import DENIALS_PER_WINDOW


@pytest.fixture(scope="module")
def agent_safe(open_sandbox):
    # custom rules on top of the preset: config is listed but unreadable, public.key an exception
    return open_sandbox(preset="agent-safe", permissions=[
        {"pattern": "/config/**", "permission": "view", "priority": 20},
        {"pattern": "/secrets/public.key", "permission": "read", "priority": 200}])


@pytest.mark.parametrize("user", ["user", "root"])
def test_invisible_paths_do_not_exist_for_any_call(agent_safe, user):
    for path in (".env", ".env.local", "secrets/api.key", "certs/server.pem", "credentials.json", ".git/HEAD",
                 ".git", "nosuchfile"):
        assert outcomes(probe(agent_safe, "stat", f"{W}/{path}", user=user)) == {"ENOENT"}, path
        assert outcomes(probe(agent_safe, "read", f"{W}/{path}", user=user)) == {"ENOENT"}, path
        assert probe(agent_safe, "inotify", f"{W}/{path}", user=user) == {"inotify_add_watch": "ENOENT"}
    listing = probe(agent_safe, "list", W, user=user)
    visible = ["README.md", "certs", "config", "docs", "main.py", "output", "secrets", "src"]
    assert listing == {"listdir": visible, "getdents64": visible}
    # secrets/ is shown only because public.key (priority 200) outranks the secrets rule (100)
    assert probe(agent_safe, "list", f"{W}/secrets", user=user)["getdents64"] == ["public.key"]
    assert probe(agent_safe, "list", f"{W}/certs", user=user)["getdents64"] == []
    assert outcomes(probe(agent_safe, "read", f"{W}/secrets/public.key", user=user)) == {"ok"}


@pytest.mark.parametrize("user", ["user", "root"])
def test_view_shows_metadata_but_no_content(agent_safe, user):
    assert outcomes(probe(agent_safe, "stat", f"{W}/config/db.yaml", user=user)) == {"ok"}
    assert outcomes(probe(agent_safe, "read", f"{W}/config/db.yaml", user=user)) == {"EACCES"}
    assert outcomes(probe(agent_safe, "write", f"{W}/config/db.yaml", user=user)) == {"EACCES"}
    assert probe(agent_safe, "list", f"{W}/config", user=user)["listdir"] == ["db.yaml"]
    info = agent_safe.commands.run(f"stat -c '%s %A %U' {W}/config/db.yaml", user=user).stdout.split()
    assert info == [str(len(PROJECT["config/db.yaml"])), "----------", "user"]


@pytest.mark.parametrize("user", ["user", "root"])
def test_read_level_cannot_be_written_by_any_means(agent_safe, user):
    assert outcomes(probe(agent_safe, "read", f"{W}/main.py", user=user)) == {"ok"}
    assert outcomes(probe(agent_safe, "write", f"{W}/main.py", user=user)) == {"EACCES"}
    assert outcomes(probe(agent_safe, "attrs", f"{W}/main.py", user=user)) == {"EACCES"}
    assert outcomes(probe(agent_safe, "remove", f"{W}/src/app.py", user=user)) == {"EACCES"}
    assert outcomes(probe(agent_safe, "create", f"{W}/src/new.py", user=user)) == {"EACCES"}
    assert agent_safe.files.read(f"{W}/main.py") == PROJECT["main.py"]  # unchanged


@pytest.mark.parametrize("user", ["user", "root"])
def test_write_level_works(agent_safe, user):
    target = f"{W}/output/{user}.txt"
    agent_safe.commands.run(f"echo one > {target}", user=user)
    assert outcomes(probe(agent_safe, "write", target, user=user)) == {"ok"}
    assert outcomes(probe(agent_safe, "create", f"{W}/output/{user}-made", user=user)) == {"ok"}
    assert outcomes(probe(agent_safe, "attrs", target, user=user)) == {"ok"}
    assert outcomes(probe(agent_safe, "remove", target, user=user)) == {"ok"}


@pytest.mark.parametrize("user", ["user", "root"])
def test_links_and_renames_cannot_move_content_across_levels(agent_safe, user):
    out = f"{W}/output"
    # hard links: a hidden source does not exist; a readable one may not gain a writable name
    assert outcomes(probe(agent_safe, "link", f"{W}/.env", f"{out}/env-link", user=user)) == {"ENOENT"}
    assert outcomes(probe(agent_safe, "link", f"{W}/main.py", f"{out}/main-link", user=user)) == {"EACCES"}
    # symlinks are followed by the kernel through the rules of where they lead
    assert probe(agent_safe, "symlink_read", f"{out}/to-env", "../.env", user=user) == \
        {"symlink": "ok", "read_through": "ENOENT"}
    assert probe(agent_safe, "symlink_read", f"{out}/to-key", f"{W}/secrets/api.key", user=user) == \
        {"symlink": "ok", "read_through": "ENOENT"}
    assert probe(agent_safe, "symlink_read", f"{out}/to-db", "/workspace/config/db.yaml", user=user) == \
        {"symlink": "ok", "read_through": "EACCES"}
    # renames out of a protected path, into one, and of a directory whose contents would change level
    assert outcomes(probe(agent_safe, "rename", f"{W}/main.py", f"{out}/main.py", user=user)) == {"EACCES"}
    assert outcomes(probe(agent_safe, "rename", f"{W}/.env", f"{out}/env", user=user)) == {"ENOENT"}
    agent_safe.commands.run(f"mkdir -p {out}/{user}-dir && echo x > {out}/{user}-dir/f", user=user)
    for target in (f"{out}/.env", f"{out}/secrets", f"{W}/docs/moved", f"{out}/x.pem"):
        assert outcomes(probe(agent_safe, "rename", f"{out}/{user}-dir", target, user=user)) == {"EACCES"}, target
    assert outcomes(probe(agent_safe, "rename", f"{out}/{user}-dir", f"{out}/{user}-moved", user=user)) == {"ok"}


def test_files_created_inside_are_checked_like_the_rest(agent_safe):
    # a file the sandbox made under a hidden name stays hidden; the rule is on the path, not the file
    assert agent_safe.commands.run(f"echo leak > {W}/output/.env.copy", check=False).exit_code != 0
    assert outcomes(probe(agent_safe, "create", f"{W}/output/secrets", user="root")) == {"EACCES"}


def test_denied_operations_are_recorded_in_the_audit_trail_and_the_sandbox_log(server, open_sandbox):
    sandbox = open_sandbox(preset="agent-safe")  # its own: the module's others have spent their reports
    probe(sandbox, "read", f"{W}/.env")
    probe(sandbox, "write", f"{W}/main.py")

    wait_until(lambda: len(denials(server, sandbox.sandbox_id)) >= 2, message="the denials in the audit trail")
    rows = denials(server, sandbox.sandbox_id)
    found = {(r["detail"]["op"], r["detail"]["path"]) for r in rows}
    assert {("lookup", "/.env"), ("open for writing", "/main.py")} <= found
    for row in rows:
        assert (row["team"], row["outcome"], row["key"]) == ("default", "denied", None)
        assert row["detail"]["process"] == "python3" and 1 < row["detail"]["pid"] < 65536  # its pid inside
    logged = [e for e in sandbox.get_logs() if e.fields.get("logger") == "permfs"]
    assert any(e.level == "warn" and e.message.startswith("denied lookup '/.env' (pid ") for e in logged)
    # nothing of the sandbox's making went to a host file
    assert "denied" not in (server.home / "sandboxes" / sandbox.sandbox_id / "disk" / "sandbox.log").read_text()


def test_a_scan_of_denied_paths_is_recorded_up_to_a_budget(server, open_sandbox):
    sandbox = open_sandbox(preset="agent-safe")
    scan = "; ".join(f"cat {W}/.env 2>/dev/null" for _ in range(DENIALS_PER_WINDOW + 20))
    sandbox.commands.run(scan, check=False)
    sandbox.commands.run(f"cat {W}/secrets/api.key", check=False)  # past the budget too

    wait_until(lambda: len(denials(server, sandbox.sandbox_id)) >= DENIALS_PER_WINDOW,
               message="the denials in the audit trail")
    time.sleep(0.5)  # any past the budget would have arrived by now
    assert len(denials(server, sandbox.sandbox_id)) == DENIALS_PER_WINDOW


PATHS = ["/main.py", "/README.md", "/.env", "/.env.local", "/secrets/api.key", "/certs/server.pem",
         "/credentials.json", "/config/db.yaml", "/docs/guide.md", "/src/app.py", "/output/result.txt", "/.git/HEAD"]


@pytest.mark.parametrize("preset", list(P.PRESETS))
def test_each_preset_is_enforced_as_the_decision_function_says(open_sandbox, preset):
    sandbox = open_sandbox(preset=preset)
    decide = P.Permissions.of(preset)
    script = "; ".join(f"python3 /tmp/probe.py {what} {W}{p}" for p in PATHS for what in ("stat", "read"))
    lines = sandbox.commands.run(script, check=False).stdout.splitlines()
    for i, path in enumerate(PATHS):
        level = decide.level(path)
        seen, read = json.loads(lines[2 * i]), json.loads(lines[2 * i + 1])
        assert outcomes(seen) == ({"ok"} if level >= P.VIEW else {"ENOENT"}), (preset, path)
        assert outcomes(read) == ({"ok"} if level >= P.READ else {"EACCES"} if level == P.VIEW else {"ENOENT"}), \
            (preset, path)
    write = probe(sandbox, "write", f"{W}/output/result.txt")
    assert outcomes(write) == ({"ok"} if decide.level("/output/result.txt") == P.WRITE else
                               {"EACCES"} if decide.level("/output/result.txt") >= P.VIEW else {"ENOENT"})
    made = probe(sandbox, "create", f"{W}/made.txt")["create"]
    assert made == ("ok" if decide.level("/made.txt") == P.WRITE else "EACCES"), preset


def test_directory_and_file_rules_and_priorities(open_sandbox):
    sandbox = open_sandbox(permissions=[
        {"pattern": "**/*", "permission": "read"},
        {"pattern": "/docs/", "permission": "write", "type": "directory"},
        {"pattern": "/README.md", "permission": "none", "type": "file"},  # a file rule beats globs
        {"pattern": "**/*.py", "permission": "none", "priority": -1},  # loses to **/* read (0)
    ])
    assert outcomes(probe(sandbox, "create", f"{W}/docs/new.md")) == {"ok"}
    assert outcomes(probe(sandbox, "stat", f"{W}/README.md")) == {"ENOENT"}
    assert outcomes(probe(sandbox, "read", f"{W}/main.py")) == {"ok"}
    assert sandbox.get_permissions()[1].type == "directory"


def test_live_changes_apply_to_the_next_open(open_sandbox):
    sandbox = open_sandbox(preset="full-access")
    assert sandbox.commands.run(f"cat {W}/.env").stdout == PROJECT[".env"]
    # a process that holds .env open across the change, and one that stat-ed it (cached attributes)
    holder = sandbox.commands.run(f"exec 3<{W}/.env && stat {W}/.env >/dev/null && echo opened && sleep 3; cat <&3",
                                  background=True)
    deadline = time.monotonic() + 30
    while "opened" not in holder.stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    sandbox.set_permissions(preset="agent-safe")
    assert outcomes(probe(sandbox, "stat", f"{W}/.env")) == {"ENOENT"}
    assert outcomes(probe(sandbox, "read", f"{W}/.env")) == {"ENOENT"}
    assert ".env" not in probe(sandbox, "list", W)["listdir"]
    assert outcomes(probe(sandbox, "write", f"{W}/main.py")) == {"EACCES"}
    assert holder.wait().stdout == "opened\n" + PROJECT[".env"]  # files already open stay open (like chmod)
    sandbox.set_permissions(preset="agent-safe", permissions=[{"pattern": "**/.env", "permission": "read",
                                                               "priority": 1000}])
    assert sandbox.commands.run(f"cat {W}/.env").stdout == PROJECT[".env"]
    assert outcomes(probe(sandbox, "stat", f"{W}/.env.local")) == {"ENOENT"}
    sandbox.set_permissions(preset="full-access")
    assert ".env.local" in probe(sandbox, "list", W)["listdir"]


def test_another_sandbox_or_host_user_cannot_enter_a_workspace(server, agent_safe, open_sandbox):
    fs_dir = None
    for line in open("/proc/mounts"):
        fields = line.split()
        if fields[0] == "sandlot-permfs":
            fs_dir = fields[1]
    assert fs_dir is not None
    target = os.path.join(fs_dir, agent_safe.sandbox_id)
    # a host account outside the sandbox's uid range: refused by the daemon (and it lists nothing)
    nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls", target],
                            capture_output=True, text=True)
    assert nobody.returncode != 0 and ("Permission denied" in nobody.stderr or "No such file" in nobody.stderr)
    # another sandbox has no path to it at all
    other = open_sandbox(preset="full-access")
    assert other.commands.run(f"ls {fs_dir}", check=False).exit_code != 0


def test_root_cannot_take_the_mount_away_or_reach_below_it(agent_safe):
    for cmd in (f"umount {W}", f"umount -l {W}", f"mount --bind /tmp {W}", "mount -t tmpfs none /mnt"):
        assert agent_safe.commands.run(cmd, user="root", check=False).exit_code != 0, cmd
    assert ".env" not in agent_safe.commands.run(f"ls -a {W}", user="root").stdout.split()
    # no FUSE device to mount a filesystem of its own, and no file handles to open by
    assert agent_safe.commands.run("test -e /dev/fuse", check=False).exit_code != 0
    assert probe(agent_safe, "stat", f"{W}/.env", user="root") == {"lstat": "ENOENT", "sys_newfstatat": "ENOENT",
                                                                  "sys_statx": "ENOENT"}
