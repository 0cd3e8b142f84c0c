"""The `base` template: a Debian minbase root filesystem made by debootstrap, with a `user` account."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._exceptions import TemplateError
from .apt_sources import find_mirror, this_host_suite
from .debootstrap import Meter, debootstrap, find_debootstrap, prune_cache
from .spec import Progress, Template

PACKAGES = (
    "bash", "coreutils", "python3", "python3-pip", "python3-venv", "git", "curl", "sudo", "procps",
    "python-is-python3",  # `python` as E2B's images have it (`python -m http.server` is a common first line)
    "ncurses-bin", "ca-certificates", "less", "iproute2",
    "libnss-myhostname",  # resolves the sandbox's own hostname, which no /etc/hosts can know ahead
)

# (path, content, mode), written over what debootstrap left: it copies the host's hostname and
# resolv.conf into the target, which must not leak into sandboxes.
FILES = (
    ("etc/hostname", "sandbox\n", 0o644),
    ("etc/hosts", ("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
                   "ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"), 0o644),
    ("etc/resolv.conf", "# placeholder: sandboxes have no network unless the runtime provides one\n", 0o644),
    # A sandbox is disposable: let `pip install` work without a venv (PEP 668 would refuse it)
    # and never phone home for a version check.
    ("etc/pip.conf", "[global]\nbreak-system-packages = true\ndisable-pip-version-check = true\n", 0o644),
    ("etc/sudoers.d/user", "user ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440),
)
# Every command E2B's API runs is `bash -l -c ...`, so /etc/profile runs each time. Debian's forks
# `id -u` there, 1.5 ms of a ~4 ms round trip; bash knows its EUID, other shells still ask `id`.
PROFILE_FORK = ('"$(id -u)"', '"${EUID:-$(id -u)}"')


@dataclass(frozen=True)
class DebianRecipe:
    suite: str = ""  # "" = the release the host runs, read at run time (apt_sources.host_suite)
    variant: str = "minbase"
    packages: tuple[str, ...] = PACKAGES
    files: tuple[tuple[str, str, int], ...] = FILES
    revision: int = 2  # bump when build() changes in a way the fields above do not show
    expected_packages: int = 155  # measured; sizes the progress bar only, so not in the fingerprint

    def release(self) -> str:
        return self.suite or this_host_suite()

    def fingerprint(self) -> str:
        recipe = asdict(self)
        del recipe["expected_packages"]
        recipe["suite"] = self.release()  # the suite itself, so a host upgrade rebuilds the template
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def build(self, rootfs: Path, cache: Path, progress: Progress) -> dict[str, Any]:
        if os.geteuid() != 0:
            raise TemplateError(
                "building a Debian template needs root (debootstrap, chroot): build it once with "
                f"`sudo sandlot template build NAME --home {cache.parent}`, or use the template 'host'")
        tool = find_debootstrap()  # before anything else, so a missing tool is what gets reported
        suite = self.release()
        mirror = find_mirror(suite)
        meter = Meter(self.expected_packages, extra_steps=4, progress=progress)
        debs = cache / "debootstrap"
        debootstrap(tool, rootfs, suite, mirror, variant=self.variant, include=self.packages,
                    cache=debs, meter=meter)

        meter.step("writing configuration")
        for rel, content, mode in self.files:
            path = rootfs / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_text(content)
            path.chmod(mode)
        profile = rootfs / "etc/profile"
        profile.write_text(profile.read_text().replace(*PROFILE_FORK))

        meter.step("adding user")
        _chroot(rootfs, "groupadd", "--gid", "1000", "user")
        _chroot(rootfs, "useradd", "--uid", "1000", "--gid", "1000", "--groups", "sudo",
                "--create-home", "--shell", "/bin/bash", "user")

        meter.step("cleaning up")
        for d in ("tmp", "var/tmp"):
            (rootfs / d).chmod(0o1777)
        # downloaded .debs and package lists: the cache dir keeps the former, `apt-get update` the latter
        for junk in [*(rootfs / "var/cache/apt").glob("**/*.deb"), *(rootfs / "var/cache/apt").glob("*.bin"),
                     *(rootfs / "var/lib/apt/lists").glob("*_*")]:
            junk.unlink()

        meter.step("listing packages")
        packages = _chroot(rootfs, "dpkg-query", "-W", "-f", "${Package}=${Version}\\n").split()
        prune_cache(debs, set(packages))
        return {"suite": suite, "mirror": mirror.uri, "packages": sorted(packages)}

    def template(self, name: str, rootfs: Path) -> Template:
        return Template(name=name, rootfs=rootfs)


def _chroot(rootfs: Path, *argv: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
    chroot = shutil.which("chroot", path=env["PATH"]) or "chroot"
    done = subprocess.run([chroot, str(rootfs), *argv], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise TemplateError(f"{' '.join(argv)} failed in the new rootfs: {done.stderr.strip()}")
    return done.stdout
