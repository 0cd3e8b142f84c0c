"""Run debootstrap and turn its `I: ...` lines into progress."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import deque
from pathlib import Path
from urllib.parse import unquote

from .._exceptions import TemplateError
from .apt_sources import Mirror
from .spec import Progress

INSTALL_HINT = ("debootstrap is not installed: as root run `apt-get install -y debootstrap` "
                "(or scripts/install-system-deps.sh), or use the 'host' template")
_STEP = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) (\S+)")
_COUNTED = {"Validating", "Unpacking", "Configuring"}  # once per package, cached download or not


def find_debootstrap() -> str:
    # it lives in /usr/sbin, which a non-login PATH may lack
    path = shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise TemplateError(INSTALL_HINT)
    return path


class Meter:
    """Estimates progress over debootstrap plus `extra_steps` steps of the recipe's own.

    Each package is validated, unpacked and configured once, so 3 steps per package; the package
    count is an estimate until validation has seen them all.
    """

    def __init__(self, expected_packages: int, extra_steps: int, progress: Progress):
        self.packages, self.extra, self.progress = expected_packages, extra_steps, progress
        self.validated = self.done = 0

    @property
    def total(self) -> int:
        return 3 * self.packages + self.extra

    def feed(self, line: str) -> None:
        line = line.strip()
        if not line.startswith("I: "):
            return
        if m := _STEP.match(line):
            verb, package = m.groups()
            if verb in _COUNTED:
                self.done = min(self.done + 1, self.total - self.extra)
            if verb == "Validating":
                self.validated += 1
                self.packages = max(self.packages, self.validated)
            message = f"{verb.lower()} {package.rstrip('.')}"
        else:
            message = line[3:].rstrip(".")
        self.progress(self.done, self.total, message)

    def debootstrap_done(self) -> None:
        # a few packages are never announced as unpacked: jump to the end of debootstrap's share
        self.done = 3 * self.packages
        self.progress(self.done, self.total, "base system installed")

    def step(self, message: str) -> None:
        self.done = min(self.done + 1, self.total)
        self.progress(self.done, self.total, message)


def debootstrap(tool: str, target: Path, suite: str, mirror: Mirror, *, variant: str,
                include: tuple[str, ...], cache: Path, meter: Meter) -> None:
    """Install `suite` into the empty directory `target` with the debootstrap at `tool`, keeping
    downloaded .debs in `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    argv = [tool, f"--variant={variant}", f"--include={','.join(include)}",
            f"--cache-dir={cache.resolve()}"]
    if mirror.keyring:
        argv.append(f"--keyring={mirror.keyring}")
    argv += [suite, str(target), mirror.uri]
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive",
               PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    tail: deque[str] = deque(maxlen=15)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", env=env)
    try:
        for line in proc.stdout:
            tail.append(line.rstrip())
            meter.feed(line)
        code = proc.wait()
    except BaseException:
        # SIGTERM lets debootstrap's exit trap unmount the /proc and /sys it mounted in the target
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if code:
        log = target / "debootstrap" / "debootstrap.log"
        details = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else list(tail)
        raise TemplateError(f"debootstrap failed (exit {code}) from {mirror.uri}:\n" + "\n".join(details))
    meter.debootstrap_done()


def prune_cache(cache: Path, installed: set[str]) -> None:
    """Drop cached .debs (`name_version_arch.deb`) of versions no longer installed, so the cache
    does not grow with every point release."""
    for deb in cache.glob("*.deb"):
        name, version, _ = deb.name.split("_", 2)
        if f"{name}={unquote(version)}" not in installed:
            deb.unlink()
