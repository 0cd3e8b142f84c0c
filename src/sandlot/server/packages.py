"""Python packages of a running sandbox: install, uninstall, list (the REST side of `sbx.packages`).

Sandboxes have no network. For an install, the sandbox's python3 reports its wheel tags, the host
fetches the wheels through its own package index configuration into the shared cache (wheels.py:
binary only, nothing from the index runs on the host), the wheels one request needs are copied into
a fresh private directory in the sandbox through the agent, and pip inside installs from there
offline; the directory is removed afterwards. pip runs as the sandbox's root (an unprivileged host
uid), so packages are system-wide: every user's commands and the code interpreter see them.

Everything the sandbox prints is untrusted: outputs are bounded, `pip list` is checked for its shape
and the tags are validated before they reach the host's pip (PythonTags.parse). Operations on one
sandbox run one at a time, and once started they finish (and clean up) even if the caller leaves.
A failed install is undone: what it added is removed, what it replaced is reinstalled from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from packaging.utils import canonicalize_name

from .. import _exceptions as E
from .. import wheels
from .live import LiveSandbox

log = logging.getLogger("sandlot.packages")
T = TypeVar("T")

INSTALLER = "root"  # root inside the sandbox: system-wide installs
MAX_REQUIREMENTS_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 4 << 20  # of one pip run; install output keeps its tail, list must fit
PIP_TIMEOUT_MS = 30 * 60 * 1000
STAGING_PREFIX = "/tmp/.sandlot-wheels-"
# Quiet pip's advice for interactive users; older pips ignore variables they do not know.
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", "PIP_NO_INPUT": "1",
           "PYTHONIOENCODING": "utf-8"}
_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")  # PEP 508 names
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Package:
    name: str
    version: str

    def json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


def package_names(names: Sequence[str]) -> list[str]:
    """Validate names for uninstall: project names only, no versions, paths or options."""
    if not names:
        raise E.InvalidArgument("no packages given")
    if len(names) > wheels.MAX_SPECS:
        raise E.InvalidArgument(f"more than {wheels.MAX_SPECS} packages in one request")
    for name in names:
        if not isinstance(name, str) or len(name) > 200 or not _NAME.match(name):
            raise E.InvalidArgument(f"not a package name: {str(name)[:200]!r}")
    return list(names)


class PackageManager:
    """Package operations on running sandboxes, with the shared wheel cache at `cache`."""

    def __init__(self, cache: Path):
        self.cache = wheels.WheelCache(cache)
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}

    # ---- operations (each one at a time per sandbox, finished even if the caller leaves) ------

    async def list(self, live: LiveSandbox) -> list[Package]:
        return await self._serialised(live, self._list, live)

    async def install(self, live: LiveSandbox, specs: Sequence[str], upgrade: bool = False) -> list[Package]:
        """Install `specs` (requirement strings); returns what this call installed or changed."""
        specs = wheels.requirements(specs)  # refused before anything runs
        return await self._serialised(live, self._install, live, specs, upgrade)

    async def install_requirements(self, live: LiveSandbox, path: str, upgrade: bool = False) -> list[Package]:
        """Install what a requirements.txt inside the sandbox lists (read as the sandbox's default
        user; relative paths are relative to its home). Options in the file are refused."""
        if not isinstance(path, str) or not path.strip():
            raise E.InvalidArgument("no requirements file given")
        text = await _read_text(live, path, live.default_user, MAX_REQUIREMENTS_BYTES)
        return await self.install(live, wheels.parse_requirements_file(text), upgrade)

    async def uninstall(self, live: LiveSandbox, names: Sequence[str]) -> list[Package]:
        """Uninstall `names`; returns what was removed (names that were not installed are skipped)."""
        names = package_names(names)
        return await self._serialised(live, self._uninstall, live, names)

    # ---- the steps ----------------------------------------------------------------------------

    async def _install(self, live: LiveSandbox, specs: list[str], upgrade: bool) -> list[Package]:
        tags = await self._tags(live)
        found = await asyncio.to_thread(self.cache.fetch, specs, tags, upgrade=upgrade)
        before = await self._list(live)
        code, output = await _pip_install(live, found, *(["--upgrade"] if upgrade else []), "--", *specs)
        after = await self._list(live)
        if code != 0:
            await self._undo(live, tags, before, after)
            raise wheels.PackageError(wheels.pip_error(output, "pip install failed"))
        return _changed(before, after)

    async def _uninstall(self, live: LiveSandbox, names: list[str]) -> list[Package]:
        before = await self._list(live)
        code, output = await _pip(live, "uninstall", "--yes", "--", *names)
        after = await self._list(live)
        if code != 0:
            raise wheels.PackageError(wheels.pip_error(output, "pip uninstall failed"))
        return _changed(after, before)

    async def _undo(self, live: LiveSandbox, tags: wheels.PythonTags, before: list[Package],
                    after: list[Package]) -> None:
        """After a failed install, put the packages back as they were: remove what it added, and
        reinstall from the wheel cache the earlier version of what it replaced before failing (pip
        restores only the package it failed on). Best effort: what cannot be undone is logged."""
        now = {canonicalize_name(p.name): p.version for p in after}
        known = {canonicalize_name(p.name) for p in before}
        added = [p.name for p in after if canonicalize_name(p.name) not in known]
        replaced = [f"{p.name}=={p.version}" for p in before if now.get(canonicalize_name(p.name)) != p.version]
        if added:
            code, output = await _pip(live, "uninstall", "--yes", "--", *added)
            if code != 0:
                log.warning("sandbox %s: could not undo a failed install of %s: %s", live.id, added,
                            wheels.pip_error(output, "pip uninstall failed"))
        if replaced:
            try:
                found = await asyncio.to_thread(self.cache.fetch, replaced, tags)
                code, output = await _pip_install(live, found, "--no-deps", "--", *replaced)
            except (E.SandlotError, OSError) as e:
                code, output = 1, getattr(e, "message", str(e))
            if code != 0:
                log.warning("sandbox %s: could not restore %s after a failed install: %s", live.id, replaced,
                            wheels.pip_error(output, "pip install failed"))

    async def _tags(self, live: LiveSandbox) -> wheels.PythonTags:
        code, out, err = await _run(live, ["-c", wheels.TAGS_SCRIPT])
        if code != 0:
            raise wheels.PackageError("the sandbox's python3 cannot report its wheel tags (is pip installed?): "
                                      + wheels.pip_error(err.decode(errors="replace"), f"exit code {code}"))
        return wheels.PythonTags.parse(out.decode(errors="replace"))

    async def _list(self, live: LiveSandbox) -> list[Package]:
        code, out, err = await _run(live, ["-m", "pip", "list", "--format", "json"], keep="head")
        if code != 0:
            raise wheels.PackageError(wheels.pip_error(err.decode(errors="replace"), "pip list failed"))
        return _parse_list(out)

    # ---- one operation at a time per sandbox ------------------------------------------------

    async def _serialised(self, live: LiveSandbox, step: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `step(*args)` under the sandbox's lock, in a task of its own: a caller that goes away
        does not cut an install short (pip would go on in the sandbox while its wheels are removed)."""
        task = asyncio.ensure_future(self._locked(live.id, step, args))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _locked(self, key: str, step: Callable[..., Awaitable[T]], args: tuple) -> T:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with lock:
                return await step(*args)
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:  # nobody holds or waits: forget the sandbox's lock
                del self._holders[key], self._locks[key]


# ---- talking to the sandbox ---------------------------------------------------------------------


@contextlib.contextmanager
def _agent_errors():
    try:
        yield
    except E.AuthenticationError as e:  # users.lookup: the template (or runtime) has no root account
        raise wheels.PackageError("installing packages needs the sandbox's root account, which this "
                                  f"sandbox does not have ({e.message})") from None


async def _run(live: LiveSandbox, args: list[str], keep: str = "tail") -> tuple[int, bytes, bytes]:
    """Run python3 with `args` as the installer; (exit code, stdout, stderr), each output bounded.
    With keep="head", output over the bound is an error (it must be parsed whole)."""
    out, err = bytearray(), bytearray()
    code = None
    with _agent_errors():
        async for event in live.agent.start("python3", args, user=INSTALLER, cwd="/", envs=PIP_ENV,
                                            timeout_ms=PIP_TIMEOUT_MS):
            for name, buf in (("stdout", out), ("stderr", err)):
                if name in event:
                    buf += event[name]
                    if len(buf) > MAX_OUTPUT_BYTES:
                        if keep == "head":
                            raise wheels.PackageError(f"python3 {' '.join(args[:3])} printed more than "
                                                      f"{MAX_OUTPUT_BYTES} bytes")
                        del buf[:len(buf) - MAX_OUTPUT_BYTES]
            if "end" in event:
                end = event["end"] if isinstance(event["end"], dict) else {}
                code = end.get("exit_code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise E.SandboxNotRunning("the sandbox stopped while pip ran")
    return code, bytes(out), bytes(err)


async def _pip_install(live: LiveSandbox, found: Sequence[Path], *args: str) -> tuple[int, str]:
    """pip install, offline, from a private copy of the wheels `found` (removed afterwards)."""
    staging = STAGING_PREFIX + secrets.token_hex(8)
    try:
        with _agent_errors():
            await live.agent.make_dir(staging, INSTALLER)  # fails if it exists: never someone else's
            for wheel in found:
                await live.agent.write(f"{staging}/{wheel.name}", INSTALLER, _file_chunks(wheel))
        return await _pip(live, "install", "--no-index", "--find-links", staging, "--no-cache-dir", *args)
    finally:
        await _remove(live, staging)


async def _pip(live: LiveSandbox, *args: str) -> tuple[int, str]:
    """Run pip; its exit code and its output (stdout then stderr, where the ERROR lines are)."""
    code, out, err = await _run(live, ["-m", "pip", *args])
    return code, (out + b"\n" + err).decode(errors="replace")


async def _remove(live: LiveSandbox, path: str) -> None:
    try:
        await live.agent.remove(path, INSTALLER)
    except E.SandlotError as e:
        log.warning("sandbox %s: could not remove %s: %s", live.id, path, e)


async def _read_text(live: LiveSandbox, path: str, user: str, limit: int) -> str:
    data = bytearray()
    stream = live.agent.read(path, user)
    try:
        with _agent_errors():
            entry = (await anext(stream)).get("entry")
            if isinstance(entry, dict) and isinstance(entry.get("size"), int) and entry["size"] > limit:
                raise E.InvalidArgument(f"{path} is larger than {limit} bytes")
            async for chunk in stream:
                data += chunk
                if len(data) > limit:
                    raise E.InvalidArgument(f"{path} is larger than {limit} bytes")
    finally:
        await stream.aclose()
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise E.InvalidArgument(f"{path} is not UTF-8 text") from None


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            yield chunk
    finally:
        f.close()


def _parse_list(out: bytes) -> list[Package]:
    """`pip list --format json`, from the untrusted sandbox: a list of {"name": str, "version": str}."""
    try:
        raw = json.loads(out)
    except ValueError:
        raw = None
    if not isinstance(raw, list):
        raise wheels.PackageError(f"pip list printed something unexpected: {out[:200]!r}")
    packages = []
    for item in raw:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("version"), str)
                and len(item["name"]) <= 200 and len(item["version"]) <= 200):
            raise wheels.PackageError(f"pip list printed an unexpected entry: {str(item)[:200]!r}")
        packages.append(Package(item["name"], item["version"]))
    return sorted(packages, key=lambda p: canonicalize_name(p.name))


def _changed(before: list[Package], after: list[Package]) -> list[Package]:
    """Packages of `after` that `before` did not have in that version."""
    old = {canonicalize_name(p.name): p.version for p in before}
    return [p for p in after if old.get(canonicalize_name(p.name)) != p.version]


def _retrieve(task: asyncio.Task) -> None:
    """A detached operation's error belongs to its caller, who may have left: do not log it twice."""
    if not task.cancelled():
        task.exception()
