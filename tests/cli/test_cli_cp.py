"""`sandlot cp`: no local data lost on a failed or killed download, `-` for stdin/stdout, directories
as one tar stream with their modes, and a hostile archive from the sandbox refused."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time

import pytest

from sandlot import Sandbox
from support import REPO

SANDLOT = str(REPO / ".venv" / "bin" / "sandlot")


@pytest.fixture
def env(server):
    return {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}


@pytest.fixture
def sandbox(server):
    sbx = Sandbox.create(api_url=server.url, api_key=server.api_key)
    yield sbx
    sbx.kill()


def sandlot(env, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SANDLOT, *args], env=env, input=input, capture_output=True, timeout=120)


def parts(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".sandlot-part")]


def test_a_failed_download_keeps_the_local_file(env, sandbox, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("precious\n")
    denied = sandlot(env, "cp", f"{sandbox.sandbox_id}:/etc/shadow", str(keep))
    assert denied.returncode == 1 and b"error:" in denied.stderr, denied.stderr
    missing = sandlot(env, "cp", f"{sandbox.sandbox_id}:/tmp/nothing", str(keep))
    assert missing.returncode == 1
    assert keep.read_text() == "precious\n" and parts(tmp_path) == []


def test_a_killed_download_keeps_the_local_file(env, sandbox, tmp_path):
    sandbox.commands.run("truncate -s 1500M /tmp/big")  # sparse: long to send, nothing on disk
    keep = tmp_path / "keep.txt"
    keep.write_text("precious\n")
    copying = subprocess.Popen([SANDLOT, "cp", f"{sandbox.sandbox_id}:/tmp/big", str(keep)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any((tmp_path / p).stat().st_size for p in parts(tmp_path)):
            time.sleep(0.01)
        assert parts(tmp_path), "the download never started"
    finally:
        copying.send_signal(signal.SIGKILL)
        copying.wait()
    assert keep.read_text() == "precious\n"


def test_a_download_replaces_a_file_and_keeps_its_mode(env, sandbox, tmp_path):
    sandbox.files.write("/tmp/new.txt", "new\n")
    old = tmp_path / "old.txt"
    old.write_text("old\n")
    old.chmod(0o640)
    assert sandlot(env, "cp", f"{sandbox.sandbox_id}:/tmp/new.txt", str(old)).returncode == 0
    assert old.read_text() == "new\n" and old.stat().st_mode & 0o777 == 0o640 and parts(tmp_path) == []


def test_dash_is_stdin_and_stdout(env, sandbox):
    data = bytes(range(256)) * 1000
    sid = sandbox.sandbox_id
    assert sandlot(env, "cp", "-", f"{sid}:/tmp/in.bin", input=data).returncode == 0
    assert sandbox.files.read("/tmp/in.bin", format="bytes") == data
    assert sandlot(env, "cp", f"{sid}:/tmp/in.bin", "-").stdout == data
    # a directory to stdout is a tar archive, as docker cp writes it
    sandbox.commands.run("mkdir -p /tmp/d/sub && echo x > /tmp/d/sub/f")
    archive = sandlot(env, "cp", f"{sid}:/tmp/d", "-")
    assert archive.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        assert {m.name for m in tar.getmembers()} >= {"./sub", "./sub/f"}
        assert tar.extractfile("./sub/f").read() == b"x\n"
    assert sandlot(env, "cp", "-", f"{sid}:/tmp/", input=b"x").returncode == 2  # stdin has no name


def test_directories_round_trip_with_their_modes(env, sandbox, tmp_path):
    src = tmp_path / "src"
    (src / "private").mkdir(parents=True)
    (src / "shared" / "deep").mkdir(parents=True)
    (src / "empty").mkdir()
    files = {"run.sh": 0o755, "notes.txt": 0o644, "private/key": 0o600, "shared/deep/data.bin": 0o640}
    for name, mode in files.items():
        (src / name).write_bytes(os.urandom(1000) + name.encode())
        (src / name).chmod(mode)
    (src / "private").chmod(0o700)
    (src / "shared").chmod(0o750)
    os.symlink("notes.txt", src / "link")
    many = src / "many"
    many.mkdir()
    for i in range(500):  # one tar stream, not a request per file
        (many / f"f{i}").write_text(str(i))
    sid = sandbox.sandbox_id

    started = time.monotonic()
    up = sandlot(env, "cp", str(src), f"{sid}:/tmp/tree")
    assert up.returncode == 0, up.stderr
    listed = sandbox.commands.run("cd /tmp/tree && stat -c '%a %n' run.sh notes.txt private/key "
                                  "shared/deep/data.bin private shared && readlink link && ls many | wc -l").stdout
    assert listed.split("\n")[:8] == ["755 run.sh", "644 notes.txt", "600 private/key", "640 shared/deep/data.bin",
                                     "700 private", "750 shared", "notes.txt", "500"]

    back = tmp_path / "back"
    down = sandlot(env, "cp", f"{sid}:/tmp/tree", str(back))
    assert down.returncode == 0, down.stderr
    assert time.monotonic() - started < 30
    for name, mode in files.items():
        assert (back / name).read_bytes() == (src / name).read_bytes()
        assert (back / name).stat().st_mode & 0o777 == mode, name
    assert (back / "private").stat().st_mode & 0o777 == 0o700
    assert (back / "shared").stat().st_mode & 0o777 == 0o750
    assert (back / "empty").is_dir() and os.readlink(back / "link") == "notes.txt"
    assert len(list((back / "many").iterdir())) == 500
    assert parts(tmp_path) == []

    # into an existing directory: merged, what was there and not in the copy stays
    (back / "mine.txt").write_text("mine")
    assert sandlot(env, "cp", f"{sid}:/tmp/tree/", str(back) + "/").returncode == 0
    assert (back / "mine.txt").read_text() == "mine" and (back / "tree" / "run.sh").exists()
    again = sandlot(env, "cp", f"{sid}:/tmp/tree", str(back))  # `back` exists: the copy goes into it
    assert again.returncode == 0 and (back / "tree" / "notes.txt").exists() and (back / "mine.txt").exists()


# Archives a hostile sandbox may send instead of what `tar -c` makes (a fake tar on its PATH)
HOSTILE = {
    "dotdot": "add('../escaped.txt', b'x')",
    "link-then-write": "link('out', OUTSIDE); add('out/pwned.txt', b'x')",
    "hardlink-out": "hard('h', '../../../../../../etc/passwd')",
    "link-in-linked-dir": "link('up', '..'); link('up/evil', '/')",
}
MAKER = """
import io, sys, tarfile
OUTSIDE = sys.argv[2]
tar = tarfile.open(sys.argv[1], 'w')
def add(name, data):
    info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))
def link(name, target):
    info = tarfile.TarInfo(name); info.type = tarfile.SYMTYPE; info.linkname = target; tar.addfile(info)
def hard(name, target):
    info = tarfile.TarInfo(name); info.type = tarfile.LNKTYPE; info.linkname = target; tar.addfile(info)
add('./ok.txt', b'fine')
{steps}
tar.close()
"""


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_archive_is_refused(env, sandbox, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    sandbox.files.write("/tmp/make.py", MAKER.replace("{steps}", HOSTILE[kind]))
    sandbox.commands.run(f"python3 /tmp/make.py /tmp/evil.tar {outside} && mkdir -p /tmp/tree && "
                         "printf '#!/bin/sh\\ncat /tmp/evil.tar\\n' > /tmp/tar && chmod +x /tmp/tar && "
                         "sudo cp /tmp/tar /usr/local/bin/tar")
    assert sandbox.commands.run("command -v tar").stdout == "/usr/local/bin/tar\n"  # the fake is the one run
    target = tmp_path / "work" / "copy"
    target.parent.mkdir()
    copied = sandlot(env, "cp", f"{sandbox.sandbox_id}:/tmp/tree", str(target))
    assert copied.returncode == 1 and b"refusing the sandbox's archive" in copied.stderr, copied.stderr
    assert list(outside.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()
    assert list(target.parent.iterdir()) == []  # nothing placed, nothing left half-made


def test_local_paths_in_the_way_are_errors_not_tracebacks(env, sandbox, tmp_path):
    sid = sandbox.sandbox_id
    sandbox.commands.run("mkdir -p /tmp/d && echo x > /tmp/d/f && echo y > /tmp/f")
    (tmp_path / "f").mkdir()  # a directory where the file would go
    (tmp_path / "d").write_text("a file where the directory would go")
    for remote in ("/tmp/f", "/tmp/d"):
        copied = sandlot(env, "cp", f"{sid}:{remote}", str(tmp_path) + "/")
        assert copied.returncode == 1 and copied.stderr.startswith(b"error:"), copied.stderr
        assert b"is in the way" in copied.stderr
    assert (tmp_path / "f").is_dir() and (tmp_path / "d").read_text() == "a file where the directory would go"
    assert parts(tmp_path) == []
