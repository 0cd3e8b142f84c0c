"""The `host` template: no build, for machines without debootstrap.

A small generated skeleton (accounts, /etc basics, an empty /home/user) plus read-only binds of the
host's /usr and the few /etc files programs need. Only what is listed here is exposed: never the
host's /root, /home, /var, /etc/shadow or other credentials, /proc or /sys.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import TemplateError
from .spec import Progress, Template

# Top-level dirs a usr-merged system links into /usr; on a host that is not merged they are bound.
USR_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Public, credential-free /etc entries that programs in /usr need (dynamic linker, alternatives
# symlinks, CA certificates, terminal and shell defaults, Python's site config). A symlink is copied
# as a symlink, since its target is inside /usr.
ETC_SHARED = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl/certs", "ssl/openssl.cnf",
    "localtime", "timezone", "os-release", "debian_version", "bash.bashrc", "inputrc", "terminfo",
    "mime.types", "protocols", "services", "python3", "python3.*",
)
# Inside the bound /usr: locally installed software and its configuration may hold credentials.
MASKED = ("/usr/local",)
DIRS = {  # skeleton directories and their modes
    "dev": 0o755, "etc": 0o755, "home": 0o755, "mnt": 0o755, "opt": 0o755, "proc": 0o555,
    "root": 0o700, "run": 0o755, "srv": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755,
    "var": 0o755, "var/cache": 0o755, "var/lib": 0o755, "var/log": 0o755, "var/tmp": 0o1777,
}
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                  "user:x:1000:1000:user:/home/user:/bin/bash\n",
    "etc/group": "root:x:0:\nsudo:x:27:user\nusers:x:100:user\nnogroup:x:65534:\nuser:x:1000:\n",
    "etc/hostname": "sandbox\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/resolv.conf": "# placeholder: sandboxes have no network unless the runtime provides one\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                         "networks: files\nprotocols: files\nservices: files\n",
    "etc/shells": "/bin/sh\n/bin/bash\n/usr/bin/bash\n",
    # Debian's /etc/profile, minus the host's profile.d (which may export anything), and without its
    # fork of `id` in bash (debian.py: PROFILE_FORK)
    "etc/profile": 'if [ "${EUID:-$(id -u)}" -eq 0 ]; then\n'
                   '  PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\nelse\n'
                   '  PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"\nfi\nexport PATH\n'
                   'if [ "${PS1-}" ] && [ "${BASH-}" ] && [ "$BASH" != "/bin/sh" ] && [ -f /etc/bash.bashrc ]; then\n'
                   '  . /etc/bash.bashrc\nfi\n',
}
USER_HOME = "home/user"


@dataclass(frozen=True)
class Plan:
    """What the host offers right now; part of the fingerprint, so a changed host regenerates."""

    links: tuple[tuple[str, str], ...]  # (rootfs path, symlink target)
    binds: tuple[tuple[str, str], ...]  # (host path, sandbox path)
    masked: tuple[str, ...]


@dataclass(frozen=True)
class HostRecipe:
    host_root: Path = Path("/")
    python: str = "/usr/bin/python3"
    revision: int = 1  # bump when build() changes in a way the plan does not show

    def plan(self) -> Plan:
        links, binds = [], [(str(self.host_root / "usr"), "/usr")]
        for name in USR_MERGED:
            path = self.host_root / name
            if path.is_symlink():
                links.append((name, os.readlink(path)))
            elif path.is_dir():
                binds.append((str(path), f"/{name}"))
        etc = self.host_root / "etc"
        for pattern in ETC_SHARED:
            for path in sorted(etc.glob(pattern)):
                rel = path.relative_to(self.host_root).as_posix()
                if path.is_symlink():
                    links.append((rel, os.readlink(path)))
                else:
                    binds.append((str(path), f"/{rel}"))
        masked = tuple(p for p in MASKED if (self.host_root / p.lstrip("/")).is_dir())
        return Plan(tuple(links), tuple(binds), masked)

    def fingerprint(self) -> str:
        data = {"revision": self.revision, "python": self.python, "plan": self.plan().__dict__,
                "dirs": DIRS, "files": FILES}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def build(self, rootfs: Path, cache: Path, progress: Progress) -> dict[str, Any]:
        if not (self.host_root / self.python.lstrip("/")).exists():
            raise TemplateError(f"the host template runs the agent with the host's {self.python}, "
                                "which is missing: install python3")
        plan = self.plan()
        progress(0, 3, "creating skeleton")
        for rel, mode in DIRS.items():
            (rootfs / rel).mkdir(parents=True, exist_ok=True)
            (rootfs / rel).chmod(mode)
        for rel, content in FILES.items():
            (rootfs / rel).write_text(content)
        for rel, target in plan.links:
            (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
            (rootfs / rel).symlink_to(target)

        progress(1, 3, "creating mount points")
        for host, inside in plan.binds:
            point = rootfs / inside.lstrip("/")
            point.parent.mkdir(parents=True, exist_ok=True)
            if Path(host).is_dir():
                point.mkdir(exist_ok=True)
            else:
                point.touch()

        progress(2, 3, "creating /home/user")
        home = rootfs / USER_HOME
        home.mkdir(mode=0o700)
        skel = self.host_root / "etc/skel"
        for dotfile in (".bashrc", ".profile", ".bash_logout"):
            if (skel / dotfile).is_file():
                shutil.copyfile(skel / dotfile, home / dotfile)
        if os.geteuid() == 0:  # built by an ordinary user, it already belongs to the uid `user` maps to
            for path in (home, *home.iterdir()):
                os.lchown(path, 1000, 1000)
        progress(3, 3, "done")
        return {"binds": [list(b) for b in plan.binds], "masked": list(plan.masked)}

    def template(self, name: str, rootfs: Path) -> Template:
        plan = self.plan()
        return Template(name=name, rootfs=rootfs, ro_binds=plan.binds, masked=plan.masked,
                        python=self.python)
