"""`sandlot create|ls|exec|cp|kill` against a real server (typer's CliRunner, in-process)."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from sandlot import Sandbox
from sandlot.runtimes import cgroups
from sandlot.runtimes.namespace import mount_root


@pytest.fixture
def sandbox_id(cli, server):
    result = cli("create")
    assert result.exit_code == 0, result.output
    sid = result.stdout.strip()
    yield sid
    Sandbox.kill(sid, api_url=server.url, api_key=server.api_key)


def test_create_ls_exec_kill(cli):
    suite = uuid.uuid4().hex[:8]
    created = cli("create", "--env", "A=1", "--metadata", f"suite={suite}", "--timeout", "120")
    assert created.exit_code == 0, created.output
    sid = created.stdout.strip()
    listed = cli("ls", "--metadata", f"suite={suite}")
    assert sid in listed.stdout and "running" in listed.stdout and f"suite={suite}" in listed.stdout
    ran = cli("exec", sid, "--", "sh", "-c", "echo $A; echo oops >&2; exit 3")
    assert (ran.exit_code, ran.stdout, ran.stderr) == (3, "1\n", "oops\n")
    assert cli("kill", sid).stdout == f"killed {sid}\n"
    again = cli("kill", sid)
    assert (again.exit_code, again.stderr) == (1, f'error: sandbox "{sid}" not found\n')  # the server's words
    assert "no sandboxes" in cli("ls", "--metadata", f"suite={suite}").stderr


def test_ls_metadata_values_with_url_characters(cli, server):
    suite = uuid.uuid4().hex[:8]
    made = {}
    for name, meta in (("a", ["note=a b", "pct=a%20b", "amp=x&y=z"]), ("b", ["note=a%20b", "pct=a b", "amp=x"])):
        created = cli("create", "--timeout", "120", "-m", f"suite={suite}", *(f for m in meta for f in ("-m", m)))
        assert created.exit_code == 0, created.output
        made[name] = created.stdout.strip()
    try:
        for pair, expected in (("note=a b", "a"), ("pct=a%20b", "a"), ("amp=x&y=z", "a"),
                               ("note=a%20b", "b"), ("pct=a b", "b"), ("amp=x", "b")):
            listed = cli("ls", "-m", f"suite={suite}", "-m", pair)
            assert listed.exit_code == 0, listed.output
            other = "b" if expected == "a" else "a"
            assert made[expected] in listed.stdout and made[other] not in listed.stdout, (pair, listed.stdout)
        assert "no sandboxes" in cli("ls", "-m", f"suite={suite}", "-m", "y=z").stderr
    finally:
        for sid in made.values():
            Sandbox.kill(sid, api_url=server.url, api_key=server.api_key)


def test_exec_forms(cli, sandbox_id):
    assert cli("exec", sandbox_id, "echo $HOME | tr a-z A-Z").stdout == "/HOME/USER\n"  # one arg: shell
    assert cli("exec", sandbox_id, "printf", "%s|", "a b", "$HOME").stdout == "a b|$HOME|"  # several: argv
    assert cli("exec", "--cwd", "/tmp", sandbox_id, "pwd").stdout == "/tmp\n"
    assert cli("exec", "-i", sandbox_id, "--", "tr", "a-z", "A-Z", input="piped in\n").stdout == "PIPED IN\n"


def test_errors_are_one_line(cli):
    missing = cli("exec", "nosuchsandbox", "--", "true")
    assert missing.exit_code == 1 and missing.stderr.startswith("error:")
    assert cli("create", "--env", "novalue").exit_code == 2
    assert cli("cp", "a", "b").exit_code == 2  # neither side is in a sandbox


def test_exec_needs_a_command(cli, sandbox_id):
    assert cli("exec", sandbox_id, "--").exit_code == 2


def test_cp_files_and_directories(cli, sandbox_id, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "run.sh").chmod(0o755)
    (src / "empty").mkdir()

    assert cli("cp", str(src / "run.sh"), f"{sandbox_id}:/tmp/").exit_code == 0  # into a directory
    assert cli("exec", sandbox_id, "/tmp/run.sh").stdout == "ran\n"
    assert cli("cp", str(src), f"{sandbox_id}:/tmp/tree").exit_code == 0
    assert cli("exec", sandbox_id, "find /tmp/tree | sort").stdout.split() == [
        "/tmp/tree", "/tmp/tree/empty", "/tmp/tree/run.sh", "/tmp/tree/sub", "/tmp/tree/sub/data.bin"]

    back = tmp_path / "back"
    assert cli("cp", f"{sandbox_id}:/tmp/tree", str(back)).exit_code == 0
    assert (back / "sub" / "data.bin").read_bytes() == (src / "sub" / "data.bin").read_bytes()
    assert os.access(back / "run.sh", os.X_OK) and (back / "empty").is_dir()
    assert cli("cp", f"{sandbox_id}:/tmp/run.sh", str(tmp_path)).exit_code == 0  # into a directory
    assert (tmp_path / "run.sh").read_text() == "#!/bin/sh\necho ran\n"
    missing = cli("cp", f"{sandbox_id}:/tmp/none", str(tmp_path))
    assert missing.exit_code == 1 and "error:" in missing.stderr


@pytest.mark.timeout(120)
def test_cp_copies_symlinks_as_symlinks(cli, sandbox_id, tmp_path):
    # a loop (`up` climbs out of the tree: following it never ends) and links out of the tree
    setup = ("mkdir -p /tmp/links/sub && cd /tmp/links && echo data > file.txt && ln -s file.txt link.txt && "
             "ln -s ../../.. sub/up && ln -s /etc etc && ln -s /nonexistent dangling && ln -s sub/ subdir")
    assert cli("exec", sandbox_id, setup).exit_code == 0
    back = tmp_path / "back"
    copied = cli("cp", f"{sandbox_id}:/tmp/links", str(back))
    assert copied.exit_code == 0, copied.output
    assert {p.relative_to(back).as_posix() for p in back.rglob("*")} == {
        "file.txt", "link.txt", "sub", "sub/up", "etc", "dangling", "subdir"}
    links = {name: os.readlink(back / name) for name in ("link.txt", "sub/up", "etc", "dangling", "subdir")}
    assert links == {"link.txt": "file.txt", "sub/up": "../../..", "etc": "/etc", "dangling": "/nonexistent",
                     "subdir": "sub/"}
    assert (back / "file.txt").read_text() == "data\n" and not (back / "sub").is_symlink()
    # a link named on the command line is followed, as cp does with its arguments
    assert cli("cp", f"{sandbox_id}:/tmp/links/link.txt", str(tmp_path / "named.txt")).exit_code == 0
    assert (tmp_path / "named.txt").read_text() == "data\n" and not (tmp_path / "named.txt").is_symlink()


def test_cp_of_the_root_into_a_directory_stays_there(cli, sandbox_id, tmp_path):
    # "/" has no name to join onto the destination directory: it must not become the host's /
    refused = cli("cp", f"{sandbox_id}:/", str(tmp_path) + "/")
    assert refused.exit_code != 0 and "error" in refused.output.lower(), refused.output


def test_create_with_limits(cli, server):
    created = cli("create", "--memory-mb", "256", "--cpu", "0.5", "--pids", "100", "--disk-mb", "1024",
                  "--timeout", "120", "-m", "who=cli", "-e", "GREETING=hi")
    assert created.exit_code == 0, created.output
    sid = created.stdout.strip()
    try:
        info = Sandbox.get_info(sid, api_url=server.url, api_key=server.api_key)
        assert info.metadata == {"who": "cli"}
        assert 115 <= (info.end_at - info.started_at).total_seconds() <= 120
        assert cli("exec", sid, "echo $GREETING").stdout == "hi\n"
        # what the kernel enforces, read on the host (this server's cgroups only)
        version = cgroups.detect()
        if version is not None:
            cg = cgroups.SandboxCgroup(sid, version, "sandlot-" + mount_root(server.home).name)
            if version == "v1":
                d = cg.dirs
                assert (d["memory"] / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
                assert (d["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
                assert (d["pids"] / "pids.max").read_text().strip() == "100"
            else:
                d = cg.dirs["unified"]
                assert (d / "memory.max").read_text().strip() == str(256 << 20)
                assert (d / "cpu.max").read_text().split()[0] == "50000"
                assert (d / "pids.max").read_text().strip() == "100"
        r = httpx.get(f"{server.url}/sandboxes/{sid}", headers={"X-API-KEY": server.api_key})
        assert (r.json()["memoryMB"], r.json()["diskSizeMB"]) == (256, 1024)
    finally:
        Sandbox.kill(sid, api_url=server.url, api_key=server.api_key)
    bad = cli("create", "--memory-mb", "1")
    assert bad.exit_code == 1 and "memory_mb" in bad.stderr
    assert cli("create", "--cpu", "lots").exit_code == 2
