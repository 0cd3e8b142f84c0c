"""Template builds the server runs itself: one child process each, stoppable at once.

A first use of a template builds it (minutes for `code-interpreter`). The build runs
`python -m sandlot.templates.worker` in its own process group; its progress lines are kept here.

- A create that finds its template unbuilt starts (or joins) the build and, unless it ends within
  QUICK_BUILD seconds, is answered at once with TemplateBuilding (503, progress attached): nothing
  is created for it later, so no sandbox can outlive a client that gave up waiting.
- Pools wait for the build.
- Stopping the server kills the worker's process group (debootstrap's exit trap unmounts what it
  mounted on SIGTERM; `TemplateStore.release_interrupted` unmounts anything left). The next build
  deletes the half-built directory and starts over, reusing the download cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field

from .. import _exceptions as E
from ..templates import TemplateStore
from ..templates.spec import Template

log = logging.getLogger("sandlot.builds")

QUICK_BUILD = 2.0  # seconds a create waits for a build before answering "building" (`host` takes ~0.1 s)
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL for a worker being stopped
LOG_EVERY = 10  # percent of progress between two log lines


@dataclass
class Build:
    name: str
    done: int = 0
    total: int = 0
    step: str = "starting"
    task: asyncio.Task[Template] = field(init=False)

    @property
    def percent(self) -> int:
        return min(99, 100 * self.done // self.total) if self.total else 0

    def building(self) -> E.TemplateBuilding:
        return E.TemplateBuilding(
            f"template {self.name} is being built ({self.percent} %, {self.step}); this first use takes a few "
            f"minutes, later ones none: retry in a few seconds", template=self.name, progress=self.percent,
            step=self.step)


class TemplateBuilds:
    """The builds of one server's template store, at most one per template."""

    def __init__(self, store: TemplateStore):
        self.store = store
        self._builds: dict[str, Build] = {}
        # name -> (its manifest's identity, the template): a create reads no files (and takes no
        # thread) while the build it was made from is the current one
        self._ready: dict[str, tuple[tuple[int, int], Template]] = {}

    def _manifest_id(self, name: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self.store.root / name / "manifest.json")
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def ready(self, name: str) -> Template | None:
        """The template if it is built and current (NotFound for an unknown name)."""
        if not self.store.is_built(name):
            return None
        template = self.store.describe(name)
        if (seen := self._manifest_id(name)) is not None:
            self._ready[name] = (seen, template)
        return template

    async def _ready_now(self, name: str) -> Template | None:
        """ready(), from what the last check found while its build is still the one on disk (a
        rebuild writes a new manifest); else read again, in a thread."""
        known = self._ready.get(name)
        if known is not None and known[0] == self._manifest_id(name):
            return known[1]
        return await asyncio.to_thread(self.ready, name)

    def start(self, name: str) -> Build:
        """The running build of `name`, started now if there is none."""
        build = self._builds.get(name)
        if build is None or build.task.done():
            build = Build(name)
            build.task = asyncio.create_task(self._run(build), name=f"build-{name}")
            build.task.add_done_callback(lambda task: self._forget(build))
            self._builds[name] = build
        return build

    def _forget(self, build: Build) -> None:
        if self._builds.get(build.name) is build:
            del self._builds[build.name]
        if not build.task.cancelled():
            build.task.exception()  # retrieved: whoever waited got it; a pool logs it

    async def get(self, name: str) -> Template:
        """The template, waiting for its build if needed."""
        return await self._ready_now(name) or await asyncio.shield(self.start(name).task)

    async def require(self, name: str) -> Template:
        """The template for a create: built, or built within QUICK_BUILD seconds, else
        TemplateBuilding with the build's progress (the build goes on)."""
        if (template := await self._ready_now(name)) is not None:
            return template
        build = self.start(name)
        try:
            async with asyncio.timeout(QUICK_BUILD):
                return await asyncio.shield(build.task)
        except TimeoutError:
            if build.task.done():  # the build itself raised it
                raise
            raise build.building() from None

    async def close(self) -> None:
        """Stop every build now and remove what they left."""
        builds = list(self._builds.values())
        for build in builds:
            build.task.cancel()
        await asyncio.gather(*(b.task for b in builds), return_exceptions=True)

    async def _run(self, build: Build) -> Template:
        home = self.store.root.parent
        spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-m", "sandlot.templates.worker", str(home), build.name,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, start_new_session=True))
        try:
            proc = await asyncio.shield(spawn)
        except asyncio.CancelledError:  # stopped while starting: the worker may exist already
            await _stop(await spawn)
            raise
        log.info("building template %s (worker %d)", build.name, proc.pid)
        error = None
        try:
            assert proc.stdout is not None
            async for line in proc.stdout:
                error = self._progress(build, line) or error
            code = await proc.wait()
        except BaseException:  # cancelled (the server stops): the whole group goes, now
            await _stop(proc)
            try:
                if not await asyncio.to_thread(self.store.release_interrupted):
                    log.info("another build holds the template store: it cleans what %s left", build.name)
            except OSError as e:
                log.warning("building template %s stopped; its directory stays mounted: %s", build.name, e)
            log.info("building template %s stopped", build.name)
            raise
        if code != 0:
            raise E.TemplateError(error or f"building template {build.name} failed (worker exit code {code})")
        log.info("template %s built", build.name)
        return self.store.describe(build.name)

    @staticmethod
    def _progress(build: Build, line: bytes) -> str | None:
        try:
            report = json.loads(line)
        except ValueError:
            return None
        if "error" in report:
            return str(report["error"])
        before = build.percent
        build.done, build.total, build.step = int(report["done"]), int(report["total"]), str(report["message"])
        if build.percent // LOG_EVERY != before // LOG_EVERY:
            log.info("building template %s: %d %% (%s)", build.name, build.percent, build.step)
        return None


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the worker's group, a grace period for all of it to exit (debootstrap unmounts
    on SIGTERM), then SIGKILL to whatever is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE
    _signal_group(proc.pid, signal.SIGTERM)
    while _signal_group(proc.pid, 0) and loop.time() < deadline:  # the worker is reaped as it exits
        await asyncio.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if none of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
