"""Templates made from another template plus Debian and Python packages, e.g. `code-interpreter` =
`base` + Node.js + ipykernel and the data stack.

The parent's root filesystem is copied; Debian packages come from the mirror the parent was built
from (apt in a chroot, with the host's resolver for the duration); the wheels are fetched on the
host for the copy's own python3 (wheels.py: binary only, the host's index configuration) and pip in
the chroot installs them offline. Nothing from the Python index runs on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import wheels
from .._exceptions import TemplateError
from .spec import Progress, Template

# ipykernel 6: its main thread reads the shell socket itself, where 7 adds a shell-channel thread
# and a hop between threads per message. Measured here (1+1, alternating between kernels):
# 6.31.0 3.0 ms, 6.29.5 3.1 ms, 7.4.0 3.5 ms p50. Nothing sandlot uses is 7-only.
KERNEL = "ipykernel>=6.29,<7"
DATA_STACK = (KERNEL, "numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "pillow",
              "requests", "e2b-charts")


@dataclass(frozen=True)
class PythonStackRecipe:
    parent: str
    packages: tuple[str, ...]
    apt: tuple[str, ...] = ()  # Debian packages, installed first
    revision: int = 1  # bump when build() changes in a way the fields above do not show
    # Python run as the template's user after the install, to fill caches that would otherwise be
    # built at a sandbox's first use (matplotlib's font list takes seconds).
    warm: str = ""

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def build(self, rootfs: Path, cache: Path, progress: Progress, parent: Path | None = None) -> dict[str, Any]:
        if parent is None:
            raise TemplateError(f"a python-stack template needs its parent '{self.parent}' built first")
        steps = Steps(progress, total=len(self.packages) * 8 + 6)
        steps.step(f"copying {self.parent}")
        copy_tree(parent, rootfs)

        if self.apt:
            steps.step("installing " + ", ".join(self.apt))
            apt_install(rootfs, self.apt)

        steps.step("asking the template's python for its wheel tags")
        tags = wheels.PythonTags.parse(chroot(rootfs, "python3", "-c", wheels.TAGS_SCRIPT).strip().splitlines()[-1])

        def on_pip_line(line: str) -> None:
            if m := re.match(r"(Collecting|Saved|File was already downloaded|Processing) (\S+)", line.strip()):
                steps.step(f"fetching {Path(m.group(2)).name}")

        found = wheels.WheelCache(cache / "wheels").fetch(self.packages, tags, on_line=on_pip_line)
        steps.total = steps.done + len(found) + 4
        staging = rootfs / "tmp" / "sandlot-wheels"
        wheels.copy_wheels(found, staging)
        try:
            chroot(rootfs, "python3", "-m", "pip", "install", "--no-index", "--find-links", "/tmp/sandlot-wheels",
                   "--no-warn-script-location", "--", *wheels.requirements(self.packages),
                   on_line=lambda line: steps.step(line.strip()[:60]) if line.startswith(
                       ("Processing", "Installing", "Successfully")) else None)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

        steps.step("warming caches")
        if self.warm:
            chroot(rootfs, "python3", "-c", self.warm, user="1000:1000", home="/home/user")
        for junk in (rootfs / "tmp").iterdir():  # what the steps left (the JRE's postinst: hsperfdata_root)
            shutil.rmtree(junk) if junk.is_dir() and not junk.is_symlink() else junk.unlink()
        installed = json.loads(chroot(rootfs, "python3", "-m", "pip", "list", "--format", "json"))
        steps.step("done")
        return {"parent": self.parent, "python": tags.version,
                "python_packages": sorted(f"{p['name']}=={p['version']}" for p in installed)}

    def template(self, name: str, rootfs: Path) -> Template:
        return Template(name=name, rootfs=rootfs, kernels=KERNEL in self.packages)


class Steps:
    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def step(self, message: str) -> None:
        self.done += 1
        self.total = max(self.total, self.done + 1)
        self.progress(self.done, self.total, message)


def apt_install(rootfs: Path, packages: tuple[str, ...]) -> None:
    """apt-get install in the chroot from the sources the parent's debootstrap wrote. The template's
    resolv.conf is a placeholder (sandboxes have no network): the host's stands in meanwhile."""
    resolv = rootfs / "etc" / "resolv.conf"
    placeholder = resolv.read_bytes()
    resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
    try:
        env = ("env", "DEBIAN_FRONTEND=noninteractive")
        chroot(rootfs, *env, "apt-get", "-q", "update")
        # the JRE's postinst runs java, which needs /proc
        chroot(rootfs, *env, "apt-get", "-q", "install", "-y", "--no-install-recommends", *packages, proc=True)
        chroot(rootfs, "apt-get", "clean")
    finally:
        resolv.write_bytes(placeholder)
        for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()


def copy_tree(source: Path, dest: Path) -> None:
    """cp -a: ownership, modes, links and xattrs as they are (the rootfs is owned by host root)."""
    done = subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", str(dest)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise TemplateError(f"copying {source} failed: {done.stderr.strip()}")


def chroot(rootfs: Path, *argv: str, on_line=None, user: str = "", home: str = "/root", proc: bool = False) -> str:
    """Run argv in the rootfs; its output. `proc`: with a /proc of its own (a pid and mount namespace
    that end with it, so nothing stays mounted)."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "HOME": home, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           **{k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}}
    tool = shutil.which("chroot", path=env["PATH"]) or "chroot"
    userspec = [f"--userspec={user}"] if user else []
    namespaces = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
                  f"--mount-proc={rootfs}/proc"] if proc else []
    child = subprocess.Popen([*namespaces, tool, *userspec, str(rootfs), *argv], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace", stdin=subprocess.DEVNULL)
    lines = []
    for line in child.stdout:
        lines.append(line)
        if on_line:
            on_line(line)
    if child.wait():
        tail = wheels.pip_error("".join(lines[-200:]), "".join(lines[-15:]))
        raise TemplateError(f"{' '.join(argv[:4])} failed in the new rootfs:\n{tail}")
    return "".join(lines)
