"""Findings of the hostile review of the permission filesystem: rule input that must be refused
with a 400 (never a 500, never saved), and what a sandbox can make the daemon do on the host."""

from __future__ import annotations

import json

import httpx
import pytest
from host_resources import permfs_daemons
from perm_helpers import W, outcomes, probe
from support import denials, wait_until

from sandlot import permissions as P
from sandlot.runtimes.namespace import mount_root

# a character class whose range is reversed does not compile; one that spans "/" would cross segments
BAD_PATTERNS = ["/[z-a]", "/data/[a-\\]", "/a/../secrets/**", "./x", "/\udc80"]  # the last: not text


@pytest.mark.parametrize("pattern", BAD_PATTERNS)
def test_bad_patterns_are_refused_when_made_and_when_changed(server, open_sandbox, pattern):
    sandbox = open_sandbox(preset="full-access")
    rules = [{"pattern": pattern, "permission": "none"}]
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key,
                                                    "Content-Type": "application/json"}) as http:
        made = http.post("/v2/sandboxes",
                         content=json.dumps({"templateID": "base", "workspace": {"permissions": rules}}))
        assert made.status_code == 400, made.text
        put = http.put(f"/sandboxes/{sandbox.sandbox_id}/permissions", content=json.dumps({"permissions": rules}))
        assert put.status_code == 400, put.text
    assert [r.pattern for r in sandbox.get_permissions()] == ["**/*"]  # not saved
    assert outcomes(probe(sandbox, "read", f"{W}/main.py")) == {"ok"}


def test_a_character_class_never_matches_a_slash():
    decide = P.Permissions([P.Rule("/out[+-0]put/**", "write")])  # "+" to "0" includes "/"
    assert decide.level("/out/put/x") == P.NONE and decide.level("/out.put/x") == P.WRITE


def test_a_blocked_path_is_that_path_not_a_pattern(open_sandbox):
    # a name with glob characters in it: the policy blocks exactly it, not what it would match as a glob
    sandbox = open_sandbox(preset="full-access", security={"blocked_paths": [f"{W}/data[1]", f"{W}/a*"]})
    assert outcomes(probe(sandbox, "create", f"{W}/data[1]", user="root")) == {"EACCES"}
    assert outcomes(probe(sandbox, "create", f"{W}/a*", user="root")) == {"EACCES"}
    assert outcomes(probe(sandbox, "create", f"{W}/data1", user="root")) == {"ok"}
    assert outcomes(probe(sandbox, "create", f"{W}/ab", user="root")) == {"ok"}


def test_a_denial_on_a_name_that_is_not_utf8_keeps_the_audit_trail_readable(server, open_sandbox):
    sandbox = open_sandbox(preset="full-access")
    sandbox.commands.run(f"touch {W}/output/$(printf 'x\\377y')")
    sandbox.set_permissions(preset="read-only")
    assert sandbox.commands.run(f"echo > {W}/output/$(printf 'x\\377y')", check=False).exit_code != 0
    wait_until(lambda: denials(server, sandbox.sandbox_id), message="the denial in the audit trail")
    assert [r["detail"]["path"] for r in denials(server, sandbox.sandbox_id)] == ["/output/x\\xffy"]
    assert any(e.message.startswith("denied open for writing '/output/x\\\\xffy'") for e in sandbox.get_logs())


def test_df_of_the_workspace_is_the_sandboxs_own_disk(open_sandbox):
    # statfs answered with the first workspace's disk: its size and how much another sandbox used
    small = open_sandbox(preset="full-access", limits={"disk_mb": 256})
    other = open_sandbox(preset="full-access", limits={"disk_mb": 512})
    small.commands.run(f"head -c 30000000 /dev/zero > {W}/output/big")

    def df(sandbox):
        return [int(n) for n in sandbox.commands.run(f"df --output=size,used {W} | tail -1").stdout.split()]

    assert 200_000 < df(small)[0] < 300_000 and df(small)[1] > 25_000
    assert 450_000 < df(other)[0] < 600_000 and df(other)[1] < 10_000


def _daemon_rss_kb(server) -> int:
    (pid,) = permfs_daemons(mount_root(server.home))
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_open_directories_cannot_take_the_daemons_memory(server, open_sandbox):
    # each open directory held its whole listing with a stat of each entry (~16 MB for 20,000
    # names): a sandbox holding a few hundred open took the memory every workspace's daemon shares
    sandbox = open_sandbox(preset="full-access")
    sandbox.commands.run(f"mkdir {W}/output/many && cd {W}/output/many && "
                         "python3 -c 'for i in range(20000): open(\"f%05d-%s\" % (i, \"x\" * 40), \"w\").close()'")
    before = _daemon_rss_kb(server)
    held = sandbox.commands.run(
        f"python3 -c 'import os, time\nfds = []\ntry:\n    for _ in range(200): "
        f"fds.append(os.open(\"{W}/output/many\", os.O_RDONLY | os.O_DIRECTORY))\n"
        f"except OSError as e: print(e.strerror)\nprint(len(fds), flush=True)\ntime.sleep(3)'", background=True)
    wait_until(lambda: "\n" in held.stdout, timeout=120, message="the directories opened")
    grown = _daemon_rss_kb(server) - before
    assert held.wait().stdout.split("\n")[:2] == ["Too many open files", "25"], held.stdout
    assert grown < 150_000, grown
    assert len(sandbox.commands.run(f"ls {W}/output/many").stdout.split()) == 20000  # once they are closed


DEEP = """
import errno, os
os.chdir("/workspace/output")
for _ in range(15):  # a path of ~3,800 characters: the longest the daemon reaches
    os.mkdir("d" * 250)
    os.chdir("d" * 250)
for i in range(70000):
    try:
        os.close(os.open("%06d.pem" % i, os.O_CREAT | os.O_WRONLY))
    except OSError as e:
        assert e.errno == errno.EACCES, e
"""


def test_decisions_on_long_paths_cannot_take_the_daemons_memory(server, open_sandbox):
    # each decision was remembered, up to 65,536 of them whatever their length: ~250 MB a workspace
    sandbox = open_sandbox(preset="agent-safe")
    sandbox.files.write("/tmp/deep.py", DEEP)
    before = _daemon_rss_kb(server)
    sandbox.commands.run("python3 /tmp/deep.py", timeout=300)
    assert _daemon_rss_kb(server) - before < 60_000


def test_no_setuid_file_is_made_on_the_host(server, open_sandbox):
    # the daemon makes every file as host root: a setuid bit would give host root's setuid programs
    # to whatever the sandbox wrote (the mount is nosuid, its layer on the host's disk is not)
    sandbox = open_sandbox(preset="full-access")
    made = f"{W}/output/n"
    sandbox.commands.run(f"cp /bin/true {W}/output/t && chmod 6755 {W}/output/t && "
                         f"python3 -c 'import os; os.close(os.open(\"{made}\", os.O_CREAT | os.O_WRONLY, 0o6755))'"
                         f" && python3 -c 'import os; os.mknod(\"{W}/output/p\", 0o16755)'", user="root")
    assert sandbox.commands.run(f"stat -c %a {W}/output/t {W}/output/n {W}/output/p").stdout.split() == \
        ["755", "755", "755"]
    layer = server.home / "sandboxes" / sandbox.sandbox_id / "disk" / "ws-upper.1" / "output"
    assert {oct(p.lstat().st_mode & 0o6000) for p in layer.iterdir()} == {"0o0"}


def test_a_directorys_link_count_does_not_count_hidden_subdirectories(open_sandbox):
    # a directory's links are 2 + its subdirectories: it counted the hidden ones
    sandbox = open_sandbox(preset="full-access")
    sandbox.commands.run(f"mkdir -p {W}/output/b/secrets {W}/output/b/x")
    sandbox.set_permissions(preset="agent-safe")
    assert sandbox.commands.run(f"ls -A {W}/output/b").stdout.split() == ["x"]
    assert sandbox.commands.run(f"stat -c %h {W}/output/b").stdout.strip() == "1"  # as overlayfs and btrfs
