"""The `base` template, built for real once per test home (see conftest.py: SANDLOT_TEST_HOME)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from sandlot._exceptions import TemplateError
from sandlot.templates import TemplateStore, progress_bar
from sandlot.templates.apt_sources import find_mirror, this_host_suite
from sandlot.templates.debian import DebianRecipe
from sandlot.templates.debootstrap import find_debootstrap

pytestmark = pytest.mark.timeout(1200)  # a cold build downloads ~70 MB and unpacks ~150 packages

TOOLS = ("bash", "python3", "pip3", "git", "curl", "sudo", "ps", "tput", "less", "ip", "ls", "env")


@pytest.fixture(scope="module")
def store(needs_root, test_home) -> TemplateStore:
    try:
        find_debootstrap()
    except TemplateError as e:
        pytest.skip(str(e))
    return TemplateStore(test_home)


@pytest.fixture(scope="module")
def base(store):
    with progress_bar("building the base template") as report:
        return store.get("base", progress=report)


def chroot(rootfs: Path, script: str, user: str | None = None) -> subprocess.CompletedProcess:
    who = ["--userspec", f"{user}:{user}"] if user else []
    env = ["env", "-i", "TERM=xterm", f"HOME={'/home/user' if user else '/root'}"]
    return subprocess.run(["chroot", *who, str(rootfs), *env, "bash", "-l", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)


def test_tree(base):
    root = base.rootfs
    assert base.ro_binds == () and base.masked == () and base.python == "/usr/bin/python3"
    assert root.stat().st_uid == 0
    assert "user:x:1000:1000::/home/user:/bin/bash" in (root / "etc/passwd").read_text().splitlines()
    assert "user:x:1000:" in (root / "etc/group").read_text()
    home = (root / "home/user").stat()
    assert (home.st_uid, home.st_gid) == (1000, 1000)
    for dotfile in (".bashrc", ".profile"):
        assert (root / "home/user" / dotfile).stat().st_uid == 1000
    for tool in TOOLS:
        assert (root / "usr/bin" / tool).exists() or (root / "usr/sbin" / tool).exists(), tool
    assert (root / "usr/lib/locale/C.utf8").is_dir()
    assert (root / "etc/ssl/certs/ca-certificates.crt").is_file()
    for tmp in ("tmp", "var/tmp"):
        assert (root / tmp).stat().st_mode & 0o7777 == 0o1777


def test_nothing_of_the_host_leaks_in(base):
    root = base.rootfs
    assert (root / "etc/hostname").read_text() == "sandbox\n"
    assert "nameserver" not in (root / "etc/resolv.conf").read_text()
    assert "localhost" in (root / "etc/hosts").read_text()
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))


def test_manifest(store, base):
    manifest = store.manifest("base")
    assert manifest["recipe"] == DebianRecipe().fingerprint()
    suite = this_host_suite()  # the host's release, read at run time: the recipe names none
    assert DebianRecipe().suite == "" and DebianRecipe(suite=suite).fingerprint() == manifest["recipe"]
    assert manifest["suite"] == suite and manifest["mirror"] == find_mirror(suite).uri
    packages = {p.split("=")[0] for p in manifest["packages"]}
    assert {"python3", "git", "curl", "sudo", "ncurses-bin", "procps"} <= packages
    assert manifest["built_at"] and manifest["build_seconds"] > 0


def test_tools_run(base):
    done = chroot(base.rootfs, 'python3 -c "print(1)"; tput -T xterm cols; git --version; curl --version; '
                               "sudo --version")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "1" and out[1].isdigit() and out[2].startswith("git version")
    assert any(line.startswith("curl ") for line in out) and any(line.startswith("Sudo version") for line in out)


def test_as_user(base):
    done = chroot(base.rootfs, 'id -un; cd && pwd; python3 -m venv /tmp/v && /tmp/v/bin/python -c "print(2)"; '
                               "rm -rf /tmp/v", user="1000")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["user", "/home/user", "2"]


def test_login_shell_is_fast(base):
    chroot(base.rootfs, "true")  # warm the page cache
    started = time.monotonic()
    assert chroot(base.rootfs, "true").returncode == 0
    assert time.monotonic() - started < 1.0


def test_a_login_shell_forks_no_id(base):
    """Every E2B command is a `bash -l -c`: Debian's /etc/profile asked `id -u` (a fork and an exec,
    1.5 ms of each command). bash knows its EUID; root still gets the sbin directories."""
    spy = ("mkdir -p /tmp/spy && printf '#!/bin/sh\\ntouch /tmp/id-ran\\nexec /usr/bin/id \"$@\"\\n' > /tmp/spy/id && "
           "chmod +x /tmp/spy/id && ")
    login = "env -i PATH=/tmp/spy:/usr/bin:/bin HOME=/root {shell} -l -c 'echo $PATH'"
    try:
        done = chroot(base.rootfs, spy + login.format(shell="bash") + "; test -e /tmp/id-ran && echo forked; "
                      + login.format(shell="sh") + "; test -e /tmp/id-ran && echo asked")
        assert done.returncode == 0, done.stderr
        root_path, sh_path, asked = done.stdout.split()  # no "forked" line from bash
        assert "/usr/sbin" in root_path.split(":") and asked == "asked"  # sh has no EUID: it asks id
        user = chroot(base.rootfs, "echo $PATH", user="1000")
        assert "/usr/sbin" not in user.stdout.strip().split(":")
    finally:
        chroot(base.rootfs, "rm -rf /tmp/spy /tmp/id-ran")


def test_not_rebuilt_unless_forced_or_changed(store, base):
    built_at = store.manifest("base")["built_at"]
    inode = base.rootfs.stat().st_ino
    assert store.get("base") == base and store.build("base") == base
    assert store.manifest("base")["built_at"] == built_at and base.rootfs.stat().st_ino == inode
    changed = TemplateStore(store.root.parent, {"base": DebianRecipe(revision=DebianRecipe().revision + 1)})
    assert store.is_built("base") and not changed.is_built("base")
