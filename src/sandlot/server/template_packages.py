"""Package installs in template builds. The SDK's `pip_install`, `apt_install` and `npm_install`
reach the server as RUN steps of known shapes (below); a build's sandbox has no network, so for
these the host fetches what the install needs and the sandbox installs it offline. Nothing fetched
runs on the host: pip downloads wheels only (wheels.py), apt downloads .debs (no maintainer
scripts: --download-only, into private state and cache directories, with the host's sources and
the sandbox's own dpkg status), npm installs with --ignore-scripts, from its registry only (no URL,
git, tarball or directory specs: NPM_REGISTRY_ONLY), into a throwaway prefix whose tree is copied
into the sandbox. Other RUN steps run as written, without network.

    pip install [--user] PKG...       -> the wheels through the host's pip configuration; installed
                                         system-wide by pip in the sandbox (packages.py's way)
    apt-get update && ... apt-get install -y [--no-install-recommends] [--fix-missing] PKG...
                                      -> .debs of the host's Debian release, from its mirror, as
                                         apt resolves them against the sandbox's dpkg status;
                                         dpkg in the sandbox installs them (as root)
    npm install [-g] [--save-dev] [PKG...] -> the tree the host's npm made, copied where the
                                         sandbox's npm would put it (its global prefix, or the
                                         working directory with package.json), then `npm rebuild`
                                         there runs the packages' scripts (the sandbox needs npm)
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _exceptions as E
from .build_log import BuildLog

if TYPE_CHECKING:
    from .agent_client import AgentClient
    from .packages import PackageManager

_WORD = r"[A-Za-z0-9@][^\s;&|`$<>()'\"\\*?]*"
PIP = re.compile(rf"^pip3? install(?P<user> --user)?(?P<pkgs>( {_WORD})+)$")
APT = re.compile(r"^apt-get update && DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y "
                 rf"(?P<opts>(--no-install-recommends |--fix-missing )*)(?P<pkgs>{_WORD}( {_WORD})*)$")
NPM = re.compile(rf"^npm install(?P<g> -g)?(?P<dev> --save-dev)?(?P<pkgs>( {_WORD})*)$")
APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:-]+)?$")
INST = re.compile(r"^Inst (\S+) (?:\[[^]]*\] )?\((\S+) .*\[(\S+)\]\)")
LISTS_FRESH_S = 3600
# The host's npm fetches from its registry only. A spec naming a URL, a git repository, a tarball or a
# directory (the step's, the project's package.json or lock, any dependency's) would have the host
# fetch an address or read a file of the team's choosing, and put what it got in the sandbox. npm
# refuses them all with these (11.14 and later: older releases ignore them, so they are refused).
NPM_REGISTRY_ONLY = {"allow-git": "none", "allow-remote": "none", "allow-file": "none", "allow-directory": "none"}
MAX_READ = 64 << 20  # a dpkg status or package.json read from the sandbox (bookworm's full status: ~1 MB)
TOOL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Install:
    tool: str  # pip | apt | npm
    packages: tuple[str, ...]
    flags: tuple[str, ...] = ()


def recognise(command: str) -> Install | None:
    """The install a RUN command is, if it has one of the shapes the SDK writes."""
    command = command.strip()
    if m := PIP.match(command):
        pkgs = tuple(m.group("pkgs").split())
        return None if "." in pkgs or any(p.startswith("-") for p in pkgs) else Install("pip", pkgs)
    if m := APT.match(command):
        pkgs = tuple(m.group("pkgs").split())
        if all(APT_NAME.match(p) for p in pkgs):
            return Install("apt", pkgs, tuple(m.group("opts").split()))
        return None
    if m := NPM.match(command):
        flags = tuple(f for f in ("-g" if m.group("g") else "", "--save-dev" if m.group("dev") else "") if f)
        pkgs = tuple(m.group("pkgs").split())
        return None if any(p.startswith("-") for p in pkgs) else Install("npm", pkgs, flags)
    return None


class BuildBox:
    """The two things packages.py's PackageManager uses of a sandbox."""

    def __init__(self, sandbox_id: str, agent: AgentClient):
        self.id, self.agent, self.default_user = sandbox_id, agent, "root"


class Installer:
    def __init__(self, packages: PackageManager, cache: Path):
        self.packages = packages
        self.root = cache / "template-builds"
        self._apt_lock = threading.Lock()  # one apt run at a time on the private state directory
        self._npm_fenced: bool | None = None  # whether the host's npm knows NPM_REGISTRY_ONLY

    async def run(self, install: Install, sandbox_id: str, agent: AgentClient, user: str, cwd: str,
                  out: BuildLog, run_cmd) -> None:
        """Do the install in the sandbox; `run_cmd(argv, user, cwd)` runs a command there (its
        output into the build's log, StepFailed on a non-zero exit)."""
        out.add(f"{install.tool}: fetching {' '.join(install.packages) or 'the dependencies'} on the host "
                "(the build's sandbox has no network)")
        if install.tool == "pip":
            changed = await self.packages.install(BuildBox(sandbox_id, agent), list(install.packages))
            out.add("installed " + (", ".join(f"{p.name}=={p.version}" for p in changed) or "nothing new"))
        elif install.tool == "apt":
            await self._apt(install, agent, out, run_cmd)
        else:
            await self._npm(install, agent, user, cwd, out, run_cmd)

    # ---- apt -----------------------------------------------------------------------------------

    async def _apt(self, install: Install, agent: AgentClient, out: BuildLog, run_cmd) -> None:
        status = await _read(agent, "/var/lib/dpkg/status")
        debs = await asyncio.to_thread(self._fetch_debs, status, install)
        if not debs:
            out.add("apt: everything asked for is installed already")
            return
        staging = f"/tmp/.sandlot-debs-{secrets.token_hex(6)}"
        await agent.make_dir(staging, "root")
        for deb in debs:
            await agent.write(f"{staging}/{deb.name}", "root", deb.read_bytes())
            deb.unlink(missing_ok=True)  # the host keeps no archive: the step's layer is the cache
        out.add(f"apt: installing {len(debs)} package(s) in the sandbox")
        # apt resolved the set on the host (with the sandbox's dpkg status): dpkg unpacks it all,
        # then configures it in dependency order
        await run_cmd(["/bin/sh", "-c", f"DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes dpkg -i "
                       f"{staging}/*.deb && rm -rf {staging}"], "root", "/")

    def _fetch_debs(self, status: bytes, install: Install) -> list[Path]:
        if shutil.which("apt-get") is None:
            raise E.Unsupported("apt installs need apt-get on the server's host (a Debian host)")
        with self._apt_lock:
            state, cache = self.root / "apt-state", self.root / "apt-cache"
            for d in (state / "lists" / "partial", cache / "archives" / "partial"):
                d.mkdir(parents=True, exist_ok=True)
            status_file = self.root / "apt-status"
            status_file.write_bytes(status)
            opts = ["-q", "-o", f"Dir::State={state}", "-o", f"Dir::State::status={status_file}",
                    "-o", f"Dir::Cache={cache}"]
            stamp = state / "updated"
            if not stamp.exists() or time.time() - stamp.stat().st_mtime > LISTS_FRESH_S:
                _tool(["apt-get", *opts, "update"], "apt-get update on the host")
                stamp.touch()
            flags = [f for f in install.flags if f in ("--no-install-recommends", "--fix-missing")]
            plan = _tool(["apt-get", *opts, "-s", "install", *flags, *install.packages], "apt-get (resolving)")
            wanted = [INST.match(line) for line in plan.splitlines()]
            _tool(["apt-get", *opts, "install", "--download-only", "-y", *flags, *install.packages],
                  "apt-get (downloading)")
            debs = []
            for m in filter(None, wanted):
                name, version, arch = m.groups()
                deb = cache / "archives" / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
                if not deb.is_file():
                    raise E.TemplateError(f"apt-get downloaded no {deb.name}")
                debs.append(deb)
            return debs

    # ---- npm -----------------------------------------------------------------------------------

    async def _npm(self, install: Install, agent: AgentClient, user: str, cwd: str, out: BuildLog, run_cmd) -> None:
        """The host's npm installs the tree (no scripts) into a throwaway prefix; the tree is
        copied into the sandbox where npm would have put it, and `npm rebuild` runs the packages'
        scripts there. (Not a cache the sandbox's npm reads offline: caches of two npm releases
        do not answer each other's requests.)"""
        glob_ = "-g" in install.flags
        project = {}
        if not glob_:  # a local install updates the working directory's package.json (and lock)
            for name in ("package.json", "package-lock.json"):
                try:
                    project[name] = await _read(agent, f"{cwd.rstrip('/')}/{name}")
                except E.NotFound:
                    pass
            if not install.packages and "package.json" not in project:
                raise E.InvalidArgument(f"npm install without packages needs {cwd}/package.json")
        packed = await asyncio.to_thread(self._npm_tree, install, project)
        staging = f"/tmp/.sandlot-npm-{secrets.token_hex(6)}"
        await agent.write(f"{staging}.tar", "root", packed)
        await run_cmd(["/bin/sh", "-c", f"mkdir -p {staging} && tar -C {staging} -xf {staging}.tar && "
                       f"rm {staging}.tar && chmod -R a+rX {staging}"], "root", "/")
        try:
            if glob_:
                script = (f'P="$(npm prefix -g)" && mkdir -p "$P/lib/node_modules" "$P/bin" && '
                          f'cp -a {staging}/lib/node_modules/. "$P/lib/node_modules/" && '
                          f'if [ -d {staging}/bin ]; then cp -a {staging}/bin/. "$P/bin/"; fi && '
                          f'npm rebuild -g --offline --no-audit --no-fund')
                await run_cmd(["/bin/sh", "-c", script], user, "/")
            else:
                script = (f"cp -r {staging}/node_modules {staging}/package.json . && "
                          f"if [ -f {staging}/package-lock.json ]; then cp {staging}/package-lock.json .; fi && "
                          f"npm rebuild --offline --no-audit --no-fund")
                await run_cmd(["/bin/sh", "-c", script], user, cwd)
        finally:
            await run_cmd(["rm", "-rf", staging], "root", "/")

    def _npm_tree(self, install: Install, project: dict[str, bytes]) -> bytes:
        if shutil.which("npm") is None:
            raise E.Unsupported("npm installs need npm on the server's host")
        if self._npm_fenced is None:
            known = _tool(["npm", "config", "get", *NPM_REGISTRY_ONLY], "npm config on the host")
            self._npm_fenced = "=undefined" not in known
        if not self._npm_fenced:
            raise E.Unsupported("npm installs need npm 11.14 or later on the server's host (earlier ones cannot be "
                                "kept to the registry)")
        with tempfile.TemporaryDirectory(prefix="sandlot-npm-") as tmp:
            prefix = Path(tmp) / "prefix"
            prefix.mkdir()
            for name, content in project.items():
                (prefix / name).write_bytes(content)
            fences = [f"--{k}={v}" for k, v in NPM_REGISTRY_ONLY.items()]
            _tool(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--cache", str(Path(tmp) / "cache"),
                   "--prefix", str(prefix), *fences, *install.flags, "--", *install.packages],
                  "npm install on the host", cwd=prefix)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(prefix, arcname=".")
            return buf.getvalue()


def _tool(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:  # with the server's environment: the host's registry configuration (proxies, CA bundles)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, cwd=cwd,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise E.TemplateError(f"{what} took longer than {TOOL_TIMEOUT_S} s") from None
    if done.returncode:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise E.InvalidArgument(f"{what} failed:\n{tail}")
    return done.stdout


async def _read(agent: AgentClient, path: str) -> bytes:
    """A file of the sandbox (untrusted: bounded) that a tool on the host reads."""
    data = bytearray()
    stream = agent.read(path, "root")
    try:
        await anext(stream)  # its entry and length
        async for chunk in stream:
            data += chunk
            if len(data) > MAX_READ:
                raise E.InvalidArgument(f"the sandbox's {path} is larger than {MAX_READ} bytes")
    finally:
        await stream.aclose()
    return bytes(data)
