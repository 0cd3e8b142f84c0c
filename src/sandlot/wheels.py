"""Python packages for sandboxes, fetched on the host: sandboxes have no network.

`pip download` runs on the host, so it uses the host's own package index configuration (pip.conf,
PIP_* variables), for the *sandbox's* interpreter: its version, ABI and platform tags are asked
from the sandbox. Binary wheels only: nothing from an index is ever built or run on the host.
Downloads land in a shared cache (`<home>/cache/wheels`); a sandbox installs offline from a copy of
the wheels one request needs. The template builder and the packages API both come through here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ._exceptions import InvalidArgument, SandlotError

# Run inside the sandbox with its python3: what wheels it can install. pip vendors `packaging`,
# so this needs nothing beyond pip, which every template with python3-pip has.
TAGS_SCRIPT = (
    "import json, sys\n"
    "from pip._vendor.packaging.tags import sys_tags\n"
    "tags = list(sys_tags())\n"
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], 'interpreter': tags[0].interpreter,"
    " 'abi': tags[0].abi, 'platforms': list(dict.fromkeys(t.platform for t in tags))}))\n"
)
_TAG = re.compile(r"^[a-z0-9_.]{1,64}$")
_VERSION = re.compile(r"^3\.\d{1,3}$")
MAX_SPECS = 1000  # requirements in one request
MAX_SPEC_CHARS = 1000


class PackageError(SandlotError):
    """pip could not fetch or install the packages; the message carries pip's own words."""

    status, code = 400, "failed_precondition"


@dataclass(frozen=True)
class PythonTags:
    """What an interpreter inside a sandbox can install (parsed from TAGS_SCRIPT's output)."""

    version: str  # "3.11"
    interpreter: str  # "cp311"
    abi: str  # "cp311"
    platforms: tuple[str, ...]  # most specific first: manylinux_2_36_x86_64, ..., linux_x86_64

    @classmethod
    def parse(cls, text: str) -> PythonTags:
        """Parse what the sandbox printed. The sandbox is untrusted and these become pip's argv, so
        every field must look like a tag (no leading '-', no spaces)."""
        try:
            raw = json.loads(text)
            if not isinstance(raw["platforms"], list):
                raise TypeError("platforms is not a list")
            tags = cls(version=raw["version"], interpreter=raw["interpreter"], abi=raw["abi"],
                       platforms=tuple(raw["platforms"]))
        except (ValueError, KeyError, TypeError):
            raise PackageError(f"the sandbox's python did not report its wheel tags: {text[:200]!r}") from None
        fields = [tags.interpreter, tags.abi, *tags.platforms]
        if (not isinstance(tags.version, str) or not _VERSION.match(tags.version) or not tags.platforms
                or len(tags.platforms) > 200 or not all(isinstance(f, str) and _TAG.match(f) for f in fields)):
            raise PackageError(f"the sandbox's python reported unusable wheel tags: {text[:200]!r}")
        return tags

    def pip_args(self) -> list[str]:
        implementation = re.match(r"[a-z]+", self.interpreter)
        args = ["--only-binary=:all:", "--python-version", self.version,
                "--abi", self.abi, "--implementation", implementation.group() if implementation else "cp"]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args


def requirements(specs: Sequence[str]) -> list[str]:
    """Validate requirement strings (`name`, `name==1.2`, `name[extra]>=1`). URLs, paths and pip
    options are refused: they could make the host read local files or an arbitrary server."""
    if not specs:
        raise InvalidArgument("no packages given")
    if len(specs) > MAX_SPECS:
        raise InvalidArgument(f"more than {MAX_SPECS} packages in one request")
    out = []
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip() or len(spec) > MAX_SPEC_CHARS:
            raise InvalidArgument(f"not a package requirement: {str(spec)[:200]!r}")
        if spec.strip().startswith("-"):
            raise InvalidArgument(f"pip options are not allowed, only package requirements: {spec!r}")
        try:
            req = Requirement(spec.strip())
        except InvalidRequirement as e:
            raise InvalidArgument(f"not a package requirement: {spec!r} ({e})") from None
        if req.url:
            raise InvalidArgument(f"package URLs are not allowed: {spec!r}")
        out.append(str(req))
    return out


def requirement(name: str, version: str | None = None) -> str:
    """`name` (or `name==version`) as one validated requirement string."""
    if version:
        if not re.fullmatch(r"[A-Za-z0-9.*+!_-]{1,64}", version):
            raise InvalidArgument(f"not a version: {version!r}")
        name = f"{name}=={version}"
    return requirements([name])[0]


def parse_requirements_file(text: str) -> list[str]:
    """The requirement lines of a requirements.txt (as pip reads them: lines ending in a backslash
    continue on the next, comments and blank lines are dropped). Options (-r, -e, --index-url,
    --hash...) are refused rather than silently ignored."""
    specs = []
    for line in re.sub(r"\\\r?\n", " ", text).splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if line:
            specs.append(line)
    if not specs:
        raise InvalidArgument("the requirements file lists no packages")
    return requirements(specs)


class WheelCache:
    def __init__(self, root: Path, python: str = sys.executable):
        # resolved: a cache that is a link to a directory not made yet (a shared cache on a fresh
        # machine) gets its target made by mkdir instead of failing with "File exists"
        self.root = Path(os.path.realpath(root))
        self.python = python

    def fetch(self, specs: Sequence[str], tags: PythonTags, *, upgrade: bool = False,
              on_line: Callable[[str], None] | None = None) -> list[Path]:
        """Wheels (in the cache) that satisfy `specs` and all their dependencies for `tags`.

        Without `upgrade`, what the cache already holds is tried first, offline; the index is asked
        only if that cannot satisfy the request (or always, with `upgrade`).
        """
        specs = requirements(specs)
        self.root.mkdir(parents=True, exist_ok=True)
        attempts = [["--no-index"], []] if not upgrade else [[]]
        for i, extra in enumerate(attempts):
            with tempfile.TemporaryDirectory(dir=self.root, prefix=".fetch-") as dest:
                done = self._pip_download(specs, tags, Path(dest), extra, on_line)
                if done.returncode == 0:
                    return self._keep(Path(dest))
                if i == len(attempts) - 1:
                    raise PackageError(pip_error(done.stdout, "could not fetch " + " ".join(specs)))
        raise AssertionError("unreachable")

    def _pip_download(self, specs: list[str], tags: PythonTags, dest: Path, extra: list[str],
                      on_line: Callable[[str], None] | None) -> subprocess.CompletedProcess:
        argv = [self.python, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off",
                "--dest", str(dest), "--find-links", str(self.root), *extra, *tags.pip_args(), "--", *specs]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=env, stdin=subprocess.DEVNULL)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if on_line:
                on_line(line.rstrip())
        return subprocess.CompletedProcess(argv, proc.wait(), "".join(lines[-400:]), "")

    def _keep(self, dest: Path) -> list[Path]:
        kept = []
        for wheel in sorted(dest.glob("*.whl")):
            target = self.root / wheel.name
            if not target.exists():
                os.replace(wheel, target)  # same filesystem: the cache never holds a partial file
            kept.append(target)
        return kept


def pip_error(output: str, fallback: str) -> str:
    """pip's own explanation: its ERROR lines (what a user needs), else the tail of its output."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return "\n".join(errors or lines[-8:]) or fallback


def copy_wheels(wheels: Sequence[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copyfile(wheel, dest / wheel.name)
