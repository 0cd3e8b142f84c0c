"""Pause modes, cold resume, auto-resume and what paused sandboxes become across restarts.

A sandbox pauses in one of two modes (E2B's `pause(mode=...)`, `lifecycle.on_timeout`):

- full: its processes are frozen in memory (the cgroup freezer); resume thaws them.
- filesystem: its writable layer is committed as a layer (layers/), its processes end and its
  host resources go; what is left is a store record and the layers it holds ("paused:<id>").
  Resume is a cold boot of the same sandbox id on its stack plus that layer: new processes, its
  own new boot id and an uptime from the boot (runtimes/bwrap.py, sandbox_process.py).

Across a server restart full pauses are adopted frozen as they were; after a host reboot (their
processes and /run state gone) they degrade to filesystem mode, from the writable layer the
reboot left on disk, and report so (`pauseMode: filesystem`). A clean stop keeps paused sandboxes
too: full ones are degraded (nothing is left running), filesystem ones hold nothing running.

`wake()` is the auto-resume hook: envd requests, connect and the port proxy call it with a sandbox
id; a sandbox paused with auto_resume (full mode only, as E2B) resumes.

Per-sandbox locks order the operations that freeze, commit or swap a sandbox (pause, resume,
snapshot, fork), so a snapshot never thaws a sandbox another request paused meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from .. import _exceptions as E
from ..layers import LayerStore
from ..layers.holding import digest_of
from ..runtimes.interface import Runtime
from ..runtimes.policy import Limits, SandboxSpec, SecurityPolicy
from ..templates import TemplateStore
from ..templates.spec import Template
from .agent_client import AgentClient
from .builds import TemplateBuilds
from .config import Config
from .envd.routing import Closing
from .events import Events
from .journal import Journal
from .live import LiveSandbox, Sandboxes, check_timeout, kernel_session, log_failure
from .quotas import Quotas
from .reaper import Reaper
from .sandbox_networks import egress_of
from .store import SandboxRecord, Store

log = logging.getLogger("sandlot.lifecycle")

MODES = ("full", "filesystem")


def paused_holder(sandbox_id: str) -> str:
    return f"paused:{sandbox_id}"


class Lifecycle:
    def __init__(self, sandboxes: Sandboxes, runtime: Runtime, store: Store, layers: LayerStore, *, config: Config,
                 builds: TemplateBuilds, templates: TemplateStore, journal: Journal, events: Events, quotas: Quotas,
                 reaper: Reaper, volume_binds: Callable[[list[dict], str], tuple[tuple[str, str], ...]]):
        """Made by the service (service.py) from its own parts; `volume_binds(mounts, team)`: a cold
        resume's volumes."""
        self.sandboxes, self.runtime, self.store, self.layers = sandboxes, runtime, store, layers
        self.config, self.builds, self.templates = config, builds, templates
        self.journal, self.events, self.quotas, self.reaper = journal, events, quotas, reaper
        self.volume_binds = volume_binds
        self._locks: dict[str, list] = {}  # sandbox id -> [lock, holders and waiters]

    @asynccontextmanager
    async def lock(self, sandbox_id: str) -> AsyncIterator[None]:
        """Orders pause, resume, snapshot, fork and kill of one sandbox (kept while in use only)."""
        entry = self._locks.setdefault(sandbox_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._locks.get(sandbox_id) is entry:
                del self._locks[sandbox_id]

    # ---- stacks ------------------------------------------------------------------------------

    def stack_of(self, template: Template) -> dict:
        """What a record keeps of the stack a sandbox runs on (to boot it again cold)."""
        return {"template": template.name, "layers": [digest_of(p) for p in template.layers],
                "envs": dict(template.envs)}

    async def template_for(self, stack: dict, default: str, *, wait: bool = False) -> Template:
        """The runtime's template for a recorded stack: its built template (TemplateBuilding while
        it builds, unless `wait`), its layers above."""
        name = stack.get("template", default)
        base = await (self.builds.get(name) if wait else self.builds.require(name))
        layers = await asyncio.to_thread(self.layers.paths, stack.get("layers", []))
        return replace(base, layers=layers, envs=tuple(stack.get("envs", {}).items()))

    def commit_writable(self, sandbox_id: str, holder: str, *, frozen: bool) -> str | None:
        """Commit the sandbox's writable layer as a layer held by `holder` (in a thread). The
        sandbox is frozen meanwhile, for a consistent copy, unless it already is. Its own
        processes ending it meanwhile (the cgroup or layer gone) is SandboxNotRunning."""
        upper, uid_base = self.runtime.writable_layer(sandbox_id)
        try:
            if not frozen:
                self.runtime.freeze(sandbox_id, True)
            try:
                return self.layers.commit(upper, holder, uid_base=uid_base, made_from=f"sandbox {sandbox_id}")
            finally:
                if not frozen:
                    self.runtime.freeze(sandbox_id, False)
        except OSError as e:
            if not upper.is_dir():  # killed (by its own processes' end, or a reboot) meanwhile
                raise E.SandboxNotRunning(f"sandbox \"{sandbox_id}\" ended while its files were copied") from e
            raise E.RuntimeFailure(f"copying the files of sandbox \"{sandbox_id}\" failed: {e}") from e

    def stacked(self, stack: dict, top: str | None, holder: str) -> dict:
        """`stack` with the layer `top` above it (if any), held by `holder`, flattened if deep."""
        layers = self.layers.stack([*stack.get("layers", []), *([top] if top else [])], holder)
        return {**stack, "layers": layers}

    # ---- pause -------------------------------------------------------------------------------

    async def pause(self, sandbox_id: str, mode: str = "full") -> None:
        if mode not in MODES:
            raise E.InvalidArgument(f"pause mode must be one of {', '.join(MODES)}")
        async with self.lock(sandbox_id):
            if mode == "full":
                await self._freeze(sandbox_id)
                self._set_pause_mode(sandbox_id, "full")
            else:
                await self._pause_filesystem(sandbox_id)

    def _set_pause_mode(self, sandbox_id: str, mode: str | None) -> None:
        live = self.sandboxes.known(sandbox_id)
        live.record.pause_mode = mode
        self.store.update(sandbox_id, pause_mode=mode)

    async def _freeze(self, sandbox_id: str) -> None:
        """A full pause: its processes frozen in memory."""
        sbx = self.sandboxes
        if sandbox_id in sbx.paused:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already paused")
        live = sbx.known(sandbox_id, sbx.live)
        try:
            await asyncio.to_thread(self.runtime.freeze, sandbox_id, True)
        except OSError:  # its cgroup may be gone: killed meanwhile
            self._check_still(sandbox_id, live, sbx.live)
            raise
        self._check_still(sandbox_id, live, sbx.live)
        del sbx.live[sandbox_id]
        self.reaper.unwatch(sandbox_id)  # a paused sandbox is not looked after; its resume looks again
        live.closed.set()  # open streams end: a paused sandbox answers like a gone one
        live.closed = Closing()
        sbx.paused[sandbox_id] = live
        live.record.state = "paused"
        self.store.update(sandbox_id, state="paused")
        self.journal.record(sandbox_id, "paused")
        self.events.paused(sandbox_id, team=live.team)

    async def _pause_filesystem(self, sandbox_id: str) -> None:
        sbx = self.sandboxes
        if sandbox_id in sbx.paused and sbx.paused[sandbox_id].record.pause_mode == "filesystem":
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already paused")
        live = sbx.known(sandbox_id)
        if live.record.workspace:
            raise E.Unsupported(f"sandbox \"{sandbox_id}\" has a workspace, which a filesystem pause would not "
                                "keep: pause it with its memory (mode full)")
        frozen = sandbox_id in sbx.paused  # full pause first, filesystem now: it stays frozen
        if not frozen and not await _answers(live):
            raise E.SandboxNotRunning(f"sandbox \"{sandbox_id}\" does not answer: a filesystem pause "
                                      "needs a responding sandbox")
        holder = paused_holder(sandbox_id)
        await asyncio.to_thread(self._commit_for_pause, live, holder, frozen)
        self.reaper.unwatch(sandbox_id)  # its processes end now: not an exit for the reaper
        sbx.live.pop(sandbox_id, None)
        sbx.paused[sandbox_id] = live
        live.closed.set()  # open streams end: a paused sandbox answers like a gone one
        live.closed = Closing()
        if live.agent is not None:
            live.agent.close()  # its kept connections: the agent is gone with the processes
        kernels, live.kernels, live.rt, live.agent = live.kernels, None, None, None
        live.record.state = "paused"
        live.record.pause_mode = "filesystem"
        self.store.update(sandbox_id, state="paused", pause_mode="filesystem", stack=live.record.stack)
        self.journal.record(sandbox_id, "paused (files only: its processes ended)", mode="filesystem")
        if not frozen:  # a full pause turned into a filesystem one was reported paused already
            self.events.paused(sandbox_id, team=live.team)
        await asyncio.to_thread(self.runtime.kill, sandbox_id)
        if kernels is not None:
            await kernels.close()

    def _commit_for_pause(self, live: LiveSandbox, holder: str, frozen: bool) -> None:
        top = self.commit_writable(live.id, holder, frozen=frozen)
        live.record.stack = self.stacked({"template": live.record.template, **live.record.stack}, top, holder)

    # ---- resume ------------------------------------------------------------------------------

    async def resume_cold(self, sandbox_id: str, timeout: int | None) -> LiveSandbox:
        """A filesystem-paused sandbox boots again from its layers (the caller holds the lock)."""
        if timeout is not None:  # as on create: it runs again for `timeout` seconds
            check_timeout(timeout, self.config.max_timeout, minimum=1)
        live = self.sandboxes.known(sandbox_id, self.sandboxes.paused)
        rec = live.record
        template = await self.template_for(rec.stack, rec.template)
        # quotas.py, as for any create: its share is held until it is listed running
        with self.quotas.admit(rec.team, Limits(**rec.limits), sandbox_id):
            spec = SandboxSpec(sandbox_id, rec.template, Limits(**rec.limits), envs=rec.envs,
                               volumes=await asyncio.to_thread(self.volume_binds, rec.volume_mounts, rec.team),
                               security=SecurityPolicy.from_changes(rec.security),
                               network=egress_of(rec), team=rec.team)  # its network as before the pause
            rt = await asyncio.to_thread(self.runtime.create, spec, template)
            self._running_again(live, rt, template)
        rec.end_at = time.time() + (timeout if timeout is not None else self.config.default_timeout)
        self.store.update(sandbox_id, state="running", pause_mode=None, end_at=rec.end_at)
        self.journal.record(sandbox_id, "resumed (a cold boot from its files)", mode="filesystem")
        self.events.resumed(sandbox_id, team=live.team)
        log.info("sandbox %s resumed from its filesystem (a cold boot)", sandbox_id)
        return live

    def _running_again(self, live: LiveSandbox, rt, template: Template) -> None:
        sandbox_id = live.id
        live.rt, live.agent = rt, self.journal.recording(sandbox_id, AgentClient(str(rt.socket_path), keep=True))
        live.kernels = kernel_session(rt, template, self.config.max_output_bytes)
        if live.kernels is not None:
            log_failure(live.kernels.start(), sandbox_id)
        self.layers.release(paused_holder(sandbox_id))  # the running sandbox holds them now
        del self.sandboxes.paused[sandbox_id]
        self.sandboxes.live[sandbox_id] = live
        self.reaper.watch(live)
        live.disk = live.usage = None  # a fresh writable layer and cgroup: the last readings are not its own
        live.record.state, live.record.pause_mode = "running", None

    async def resume(self, sandbox_id: str, timeout: int | None = None) -> LiveSandbox:
        async with self.lock(sandbox_id):
            live = self.sandboxes.known(sandbox_id)
            if sandbox_id in self.sandboxes.paused and live.record.pause_mode == "filesystem":
                return await self.resume_cold(sandbox_id, timeout)
            live = await self._thaw(sandbox_id, timeout)
            self._set_pause_mode(sandbox_id, None)
            return live

    async def _thaw(self, sandbox_id: str, timeout: int | None = None) -> LiveSandbox:
        """Resume from a full pause: its frozen processes run on."""
        sbx = self.sandboxes
        if timeout is not None:  # as on create: it runs again for `timeout` seconds
            check_timeout(timeout, self.config.max_timeout, minimum=1)
        if sandbox_id in sbx.live:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already running")
        live = sbx.known(sandbox_id, sbx.paused)
        try:
            with self.quotas.admit(live.record.team, Limits(**live.record.limits), sandbox_id):
                await asyncio.to_thread(self.runtime.freeze, sandbox_id, False)
        except OSError:
            self._check_still(sandbox_id, live, sbx.paused)
            raise
        self._check_still(sandbox_id, live, sbx.paused)
        del sbx.paused[sandbox_id]
        sbx.live[sandbox_id] = live
        self.reaper.watch(live)
        live.record.state = "running"
        live.record.end_at = time.time() + (timeout if timeout is not None else self.config.default_timeout)
        self.store.update(sandbox_id, state="running", end_at=live.record.end_at)
        self.journal.record(sandbox_id, "resumed")
        self.events.resumed(sandbox_id, team=live.team)
        return live

    def _check_still(self, sandbox_id: str, live: LiveSandbox, table: dict[str, LiveSandbox]) -> None:
        """After awaiting the freezer: another request may have killed, paused or resumed the sandbox
        meanwhile. Answer as if this request came second."""
        if table.get(sandbox_id) is live:
            return
        if sandbox_id in self.sandboxes.paused:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already paused")
        if sandbox_id in self.sandboxes.live:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already running")
        raise E.NotFound(f"sandbox \"{sandbox_id}\" not found")

    async def wake(self, sandbox_id: str) -> None:
        """The auto-resume hook: resume the sandbox if it is paused and asked for auto_resume."""
        live = self.sandboxes.paused.get(sandbox_id)
        if live is None or not live.record.auto_resume or live.record.pause_mode == "filesystem":
            return
        try:
            await self.resume(sandbox_id)
            log.info("sandbox %s auto-resumed by a request", sandbox_id)
        except E.AlreadyExists:  # resumed by a concurrent request
            pass

    # ---- restarts ----------------------------------------------------------------------------

    def adopt_paused(self, rec: SandboxRecord) -> bool:
        """At start, a paused record whose processes are gone (or never ran: filesystem mode):
        keep it paused in filesystem mode; False if nothing of it can be kept."""
        if rec.pause_mode != "filesystem":  # a full pause the reboot ended: degrade it
            try:
                self._degrade(rec)
            except Exception as e:
                log.error("sandbox %s: its files could not be kept after its processes ended: %s", rec.id, e)
                return False
            log.warning("sandbox %s was paused with its memory, which did not survive a reboot: it is "
                        "now paused with its files only (pauseMode filesystem)", rec.id)
        try:
            self.layers.paths(rec.stack.get("layers", []))
            self.templates.describe(rec.stack.get("template", rec.template))
            rec.stack.setdefault("template", rec.template)
        except E.SandlotError as e:
            log.error("sandbox %s: its layers are gone (%s)", rec.id, e)
            return False
        rec.pause_mode = "filesystem"
        self.store.update(rec.id, pause_mode="filesystem", stack=rec.stack)
        return True

    def _degrade(self, rec: SandboxRecord) -> None:
        holder = paused_holder(rec.id)
        try:
            top = self.commit_writable(rec.id, holder, frozen=True)
        except E.NotFound:
            top = None  # no writable layer left on disk: its layers so far are what it has
        rec.stack = self.stacked({"template": rec.template, **rec.stack}, top, holder)
        self.runtime.kill(rec.id)

    async def keep_paused(self, live: LiveSandbox) -> bool:
        """At a clean stop: a fully paused sandbox keeps its files (filesystem mode), not its
        processes; a filesystem-paused one has nothing running to stop. False: its files could
        not be kept (the service kills it)."""
        if live.record.pause_mode == "filesystem":
            return True
        try:
            await asyncio.to_thread(self._degrade, live.record)
            live.record.pause_mode = "filesystem"
            self.store.update(live.id, pause_mode="filesystem", stack=live.record.stack)
            log.info("sandbox %s stays paused across the stop, with its files only", live.id)
            return True
        except Exception:
            log.exception("sandbox %s: could not keep its files; killing it", live.id)
            return False

    def forget(self, sandbox_id: str) -> None:
        """A killed sandbox's paused layers go (called by kill, in a thread)."""
        if self.layers.held_by(paused_holder(sandbox_id)):
            self.layers.release(paused_holder(sandbox_id))
            self.layers.gc()


async def _answers(live: LiveSandbox) -> bool:
    try:
        await asyncio.wait_for(_ping(live), 5)
        return True
    except Exception:
        return False


async def _ping(live: LiveSandbox) -> None:
    async for _ in live.agent.start("/bin/true", []):
        pass
