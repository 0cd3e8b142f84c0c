"""Sandbox lifecycle: create (from a warm pool when possible), timeouts, kill, pause, adoption.

States: running -> paused -> running, and running|paused -> killed (final). The store is written
before and after every runtime action, so a crash at any point leaves a record that the next start
resolves: live sandboxes are adopted, broken ones are killed and marked so.

Composed of: warm pools (pools.py), the reaper (reaper.py), usage samples (usage.py), networks
(sandbox_networks.py); pause modes, resume and wake (lifecycle.py); snapshots (snapshots.py). The
parts are handed what they use (the sandboxes as live.py's `Sandboxes`, the runtime, the store...)
and import nothing from here: the arrows run from the service down to its parts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import posixpath
import secrets
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from .. import _exceptions as E
from ..layers import LayerStore
from ..runtimes.interface import Runtime, RuntimeSandbox
from ..runtimes.policy import Limits, SandboxSpec, Workspace
from ..templates import TemplateStore
from ..templates.spec import Template
from .agent_client import AgentClient
from .builds import TemplateBuilds
from .config import Config
from .code_contexts import KernelSession
from .events import Events
from .journal import Journal
from .lifecycle import Lifecycle
from .live import CreateRequest, LiveSandbox, check_timeout, kernel_session, log_failure
from .pools import Pools, new_sandbox_id
from .quotas import Holding, Quotas
from .reaper import Reaper
from .sandbox_networks import SandboxNetworks, network_record
from .store import SandboxRecord, Store
from .throttle import ByteRate
from .usage import UsageSampler
from .volumes import volume_binds

if TYPE_CHECKING:
    from ..volumes import VolumeStore
    from .snapshots import Snapshots
    from .template_files import TemplateFiles

log = logging.getLogger("sandlot.service")


class SandboxService:
    def __init__(self, config: Config, store: Store, runtime: Runtime, templates: TemplateStore, layers: LayerStore,
                 events: Events | None = None):
        self.config = config
        self.events = events or Events()  # log lines and metrics of lifecycle events
        self.store = store
        self.runtime = runtime
        self.templates = templates
        self.builds = TemplateBuilds(templates)  # in worker processes, so that shutdown is prompt
        self.live: dict[str, LiveSandbox] = {}
        self.paused: dict[str, LiveSandbox] = {}
        self.journal = Journal()  # each sandbox's log (logs_api.py)
        # team quotas and host memory, checked on create and resume (quotas.py)
        self.quotas = Quotas(store.teams, self._holdings, overcommit=config.memory_overcommit,
                             reserve_mb=config.host_memory_reserve_mb, disk=config.home,
                             disk_overcommit=config.disk_overcommit, disk_reserve_mb=config.host_disk_reserve_mb)
        self.pools = Pools(config, runtime, self._template)
        self.reaper = Reaper(self, runtime, kill=self.kill, pause=self.pause)
        self.networks = SandboxNetworks(self, config, runtime, store, self.journal)
        self.usage = UsageSampler(self, runtime, self.networks.usage)
        # pause modes (full, filesystem), resume, wake, paused sandboxes across restarts
        self.lifecycle = Lifecycle(self, runtime, store, layers, config=config, builds=self.builds,
                                   templates=templates, journal=self.journal, events=self.events,
                                   quotas=self.quotas, reaper=self.reaper, volume_binds=self.volume_binds)
        self._tasks: list[asyncio.Task] = []  # the reaper's and the sampler's loops
        # set by the app: snapshots a create may name (snapshots.Snapshots); volumes (volumes.VolumeStore);
        # uploaded template build files (template_files.TemplateFiles), which count toward max_disk_mb
        self.snapshots: Snapshots | None = None
        self.volumes: VolumeStore | None = None
        self.template_files: TemplateFiles | None = None

    # ---- start and stop ----------------------------------------------------------------------

    async def startup(self) -> None:
        for warning in self.runtime.degradations():
            log.warning("DEGRADED ISOLATION: %s", warning)
        await asyncio.to_thread(self._adopt_all)
        for live in self.live.values():
            self.reaper.watch(live)
        self._tasks = [asyncio.create_task(self.reaper.run(), name="sandlot-reaper"),
                       asyncio.create_task(self.usage.run(), name="sandlot-metrics")]
        for name in self.config.pool_templates:
            if self.config.pool_size > 0:
                self.pools.refill(name)

    def _adopt_all(self) -> None:
        known = set()
        for rec in self.store.live():
            known.add(rec.id)
            if rec.state == "running" and rec.end_at <= time.time() and not rec.auto_pause:
                log.info("sandbox %s reached its deadline while the server was down: killing it", rec.id)
                self._kill_leftover(rec.id)
                self.store.update(rec.id, state="killed", ended_at=time.time(), end_reason="timeout")
                continue
            if rec.state == "paused" and rec.pause_mode == "filesystem":
                rt = None  # nothing of it runs: lifecycle.adopt_paused keeps its layers
            else:
                rt = self.runtime.adopt(rec.id)
            if rt is None and rec.state == "paused":
                self.networks.adopt(rec, running=False)  # its network comes back at resume
                if self.lifecycle.adopt_paused(rec):
                    self.paused[rec.id] = self._live(rec, None, None)
                    self.journal.record(rec.id, "adopted after a server restart (paused, files only)")
                    continue
            if rt is None:
                log.warning("sandbox %s did not survive the restart: cleaning up", rec.id)
                self._kill_leftover(rec.id)
                self.store.update(rec.id, state="killed", ended_at=time.time(), end_reason="lost on restart")
                continue
            self.networks.adopt(rec)
            try:
                # a sandbox from a snapshot runs on the snapshot's built template
                template = self.templates.describe(rec.stack.get("template", rec.template))
                kernels = kernel_session(rt, template, self.config.max_output_bytes)
            except E.NotFound:
                kernels = None
            live = self._live(rec, rt, kernels)
            (self.paused if rec.state == "paused" else self.live)[rec.id] = live
            self.journal.record(rec.id, f"adopted after a server restart ({rec.state})")
            log.info("adopted sandbox %s (%s)", rec.id, rec.state)
        for sid in self.runtime.leftovers() - known:
            log.info("removing leftover sandbox resources %s", sid)
            self._kill_leftover(sid)

    def _kill_leftover(self, sandbox_id: str) -> None:
        """Whatever a dead sandbox left must never stop the server from starting: what cannot be
        removed now stays a leftover, retried at the next start."""
        try:
            self.runtime.kill(sandbox_id)
        except Exception:
            log.exception("could not clean up sandbox %s", sandbox_id)

    async def shutdown(self) -> None:
        self.pools.stop()  # no refill starts another sandbox from now on
        for task in self._tasks:
            task.cancel()
        self.reaper.close()
        await self.builds.close()  # refills waiting for a build end with it
        await self.pools.close()
        if self.config.kill_on_shutdown:
            for sid in list(self.live):
                await self.kill(sid, reason="server shutdown")
            for live in list(self.paused.values()):  # paused ones keep their files (lifecycle.py)
                if not await self.lifecycle.keep_paused(live):
                    await self.kill(live.id, reason="server shutdown")
        await asyncio.to_thread(self.runtime.close)
        self.usage.close()

    # ---- create ------------------------------------------------------------------------------

    async def create(self, req: CreateRequest) -> LiveSandbox:
        started = time.monotonic()
        try:
            live, pooled = await self._create(req)
        except Exception as e:
            self.events.create_failed(req.template, e, time.monotonic() - started)
            raise
        self.events.created(live.id, req.template, pooled, time.monotonic() - started)
        return live

    async def _create(self, req: CreateRequest) -> tuple[LiveSandbox, bool]:
        check_timeout(req.timeout, self.config.max_timeout, minimum=1)
        req.limits.validate()
        req.egress = self.networks.allowed(req.egress)
        with self.quotas.admit(req.team, req.limits):  # its share is held until it is listed
            return await self._create_admitted(req)

    async def _create_admitted(self, req: CreateRequest) -> tuple[LiveSandbox, bool]:
        # TemplateBuilding (503) while it builds; a fork's children come with their stack
        template = req.stack or await self._template(req.template)
        pooled = self.pools.claim(req) if req.stack is None else None
        if pooled is None:
            _apart(req.workspace, req.volume_mounts)  # before a volume is mounted
            volumes = await asyncio.to_thread(self.volume_binds, req.volume_mounts, req.team) \
                if req.volume_mounts else ()
            spec = SandboxSpec(new_sandbox_id(), req.template, req.limits, envs=req.envs, volumes=volumes,
                               workspace=req.workspace, security=req.security, network=req.egress, team=req.team)
            rt = await asyncio.to_thread(self.runtime.create, spec, template)
            kernels = kernel_session(rt, template, self.config.max_output_bytes)
            if kernels is not None and req.security.max_output_size:  # the policy's output cap, per run
                kernels.max_output = min(kernels.max_output, req.security.max_output_size)
            if kernels is not None:  # its first run_code should not wait for a whole kernel start
                log_failure(kernels.start(), rt.sandbox_id)
        else:
            rt, kernels, spec = pooled.rt, pooled.kernels, replace(pooled.spec, network=req.egress, team=req.team)
            try:  # its link was made ahead: attached now, or taken away later
                self.networks.for_pooled(pooled, req.egress, req.team)
            except BaseException:
                asyncio.get_running_loop().run_in_executor(None, self.runtime.kill, rt.sandbox_id)
                raise
        # once per sandbox handed out (not per pooled one made ahead)
        log.info("sandbox %s loosenings: %s", rt.sandbox_id, "; ".join(spec.loosenings(template)) or "none")
        if restrictions := spec.security.restrictions():
            log.info("sandbox %s restrictions: %s", rt.sandbox_id, "; ".join(restrictions))
        now = time.time()
        rec = SandboxRecord(
            id=rt.sandbox_id, template=req.template, state="running", started_at=now,
            end_at=now + req.timeout, metadata=req.metadata, envs=req.envs, limits=asdict(req.limits),
            access_token=secrets.token_urlsafe(24) if req.secure else None, auto_pause=req.auto_pause,
            auto_pause_mode=req.auto_pause_mode, auto_resume=req.auto_resume,
            stack=self.lifecycle.stack_of(template), volume_mounts=req.volume_mounts,
            security=req.security.changes(), workspace=req.workspace is not None, team=req.team,
            network=network_record(req.egress, req.network, req.iam))
        self.store.insert(rec)
        live = self._live(rec, rt, kernels)
        self.live[rec.id] = live
        self.reaper.watch(live)
        try:
            await self.networks.trust_ca(live, req.egress, fresh=True)  # header rules: the egress CA
        except BaseException:
            await self.kill(rec.id, reason="could not install the egress CA")
            raise
        self.journal.record(rec.id, f"created from template {req.template}", template=req.template,
                            timeout=req.timeout, pooled=pooled is not None, **asdict(req.limits))
        return live, pooled is not None

    def _live(self, rec: SandboxRecord, rt: RuntimeSandbox | None, kernels: KernelSession | None) -> LiveSandbox:
        """The control plane's handle on a sandbox (rt None: paused with its files only)."""
        agent = self.journal.recording(rec.id, AgentClient(str(rt.socket_path), keep=True)) if rt is not None else None
        return LiveSandbox(rec, rt, agent, kernels=kernels, output_rate=ByteRate(self.config.output_rate_bytes))

    async def _template(self, name: str, *, wait: bool = False) -> Template:
        """What a create or a pool names: a built template (a create gets TemplateBuilding while it
        builds; wait: a pool waits), or a snapshot, by its id (api.py resolved its name for the
        caller's team), on its template."""
        snap = self.snapshots.by_id(name) if self.snapshots is not None else None
        if snap is not None:
            return await self.lifecycle.template_for(snap.stack, snap.stack["template"], wait=wait)
        return await (self.builds.get(name) if wait else self.builds.require(name))

    def volume_binds(self, mounts: list[dict], team: str) -> tuple[tuple[str, str], ...]:
        """(host mount, sandbox path) of each of a create's volumeMounts (volumes of `team`)."""
        if not mounts:
            return ()
        if self.volumes is None:
            raise E.Unsupported("this server has no volumes")
        return volume_binds(self.volumes, mounts, team)

    # ---- lookups (live.Sandboxes, as the parts use them) ---------------------------------------

    def known(self, sandbox_id: str, table: dict[str, LiveSandbox] | None = None) -> LiveSandbox:
        """The sandbox from `table` (default: running or paused), or NotFound."""
        live = table.get(sandbox_id) if table is not None else \
            self.live.get(sandbox_id) or self.paused.get(sandbox_id)
        if live is None:
            raise E.NotFound(f"sandbox \"{sandbox_id}\" not found")
        return live

    def record(self, sandbox_id: str) -> SandboxRecord:
        return self.known(sandbox_id).record

    def team_of(self, sandbox_id: str) -> str | None:
        """The team owning a sandbox this server runs, holds paused or ran; None if unknown (the
        routes' team check, auth.py)."""
        live = self.live.get(sandbox_id) or self.paused.get(sandbox_id)
        if live is not None:
            return live.record.team
        rec = self.store.get(sandbox_id)
        return rec.team if rec is not None else None

    def _holdings(self) -> list[Holding]:
        """What the running and paused sandboxes hold, the volumes and the uploaded template build
        files (quotas.py). A sandbox paused
        with its files only holds no memory. Each sandbox's holding is kept on it while what it
        depends on is unchanged: every create walks them all (~5 -> ~1 ms with 2000 alive)."""
        found = []
        for table in (self.live, self.paused):
            for live in table.values():
                key = (live.record.state, live.rt is None)
                if live.holding is None or live.holding[0] != key:
                    live.holding = (key, self._holding(live))
                found.append(live.holding[1])
        if self.volumes is not None:
            found.extend(Holding(f"volume:{v.id}", v.team, 0, v.size_mb, running=False,
                                 disk_written_mb=functools.partial(self.volumes.written_mb, v))
                         for v in self.volumes.list())
        if self.template_files is not None:
            found.extend(self.template_files.holdings())
        return found

    def _holding(self, live: LiveSandbox) -> Holding:
        limits = live.record.limits
        memory = 0 if live.rt is None else limits.get("memory_mb", Limits.memory_mb)
        return Holding(live.id, live.record.team, memory, limits.get("disk_mb", Limits.disk_mb),
                       live.record.state == "running", functools.partial(self._disk_written_mb, live.id))

    def _disk_written_mb(self, sandbox_id: str) -> int:
        written = getattr(self.runtime, "disk_written", None)  # a runtime without disk images: 0
        return written(sandbox_id) >> 20 if written else 0

    def get_running(self, sandbox_id: str) -> LiveSandbox | None:
        return self.live.get(sandbox_id)

    def running(self) -> list[LiveSandbox]:
        return list(self.live.values())

    def listed(self) -> list[SandboxRecord]:
        return [s.record for s in (*self.live.values(), *self.paused.values())]

    # ---- lifecycle changes -------------------------------------------------------------------

    async def kill(self, sandbox_id: str, reason: str = "killed") -> None:
        # after a snapshot, fork or pause of it in progress (lifecycle.py's lock)
        async with self.lifecycle.lock(sandbox_id):
            await self._kill(sandbox_id, reason)

    async def _kill(self, sandbox_id: str, reason: str) -> None:
        started = time.monotonic()
        self.known(sandbox_id)
        live = self.live.pop(sandbox_id, None) or self.paused.pop(sandbox_id)
        self.networks.forget(sandbox_id)
        self.reaper.unwatch(sandbox_id)
        live.closed.set()
        if live.agent is not None:
            live.agent.close()  # its kept connections
        self.store.update(sandbox_id, state="killed", ended_at=time.time(), end_reason=reason)
        self.journal.record(sandbox_id, f"ended: {reason}", level="warn" if reason == "sandbox exited" else "info",
                            reason=reason)
        self.journal.ended(sandbox_id)
        # shielded: a reaper cancelled at shutdown must not drop a kill queued for a thread (the
        # sandbox is no longer listed anywhere, so nothing else would remove it)
        await asyncio.shield(asyncio.to_thread(self._end, sandbox_id))
        if live.kernels is not None:
            await live.kernels.close()
        self.events.killed(sandbox_id, live.record.template, reason, time.monotonic() - started, team=live.team)

    def _end(self, sandbox_id: str) -> None:
        self.runtime.kill(sandbox_id)
        self.lifecycle.forget(sandbox_id)  # the layers of a filesystem pause

    async def wake(self, sandbox_id: str) -> None:
        """The auto-resume hook (envd requests, the port proxy): see lifecycle.wake."""
        await self.lifecycle.wake(sandbox_id)

    def set_timeout(self, sandbox_id: str, timeout: int) -> None:
        check_timeout(timeout, self.config.max_timeout)
        rec = self.record(sandbox_id)
        rec.end_at = time.time() + timeout
        self.store.update(sandbox_id, end_at=rec.end_at)
        self.journal.record(sandbox_id, f"timeout set: ends in {timeout}s", timeout=timeout)

    async def connect(self, sandbox_id: str, timeout: int | None) -> tuple[LiveSandbox, bool]:
        """Make sure the sandbox runs (resuming it if paused); extend, never shorten, its timeout.

        Returns the sandbox and whether it was resumed.
        """
        if timeout is not None:  # before resuming: a refused request changes nothing
            check_timeout(timeout, self.config.max_timeout)
        resumed = False
        if sandbox_id in self.paused:
            await self.resume(sandbox_id)
            resumed = True
        live = self.known(sandbox_id, self.live)
        if timeout is not None:
            end = time.time() + timeout
            if end > live.record.end_at:
                live.record.end_at = end
                self.store.update(sandbox_id, end_at=end)
        return live, resumed

    async def pause(self, sandbox_id: str, mode: str = "full") -> None:
        """Pause with its memory (full: frozen) or its files only (filesystem): lifecycle.py."""
        await self.lifecycle.pause(sandbox_id, mode)

    async def resume(self, sandbox_id: str, timeout: int | None = None) -> LiveSandbox:
        return await self.lifecycle.resume(sandbox_id, timeout)


def _apart(workspace: Workspace | None, volume_mounts: list[dict]) -> None:
    """A volume and the workspace cannot share a path: one bind would cover the other."""
    if workspace is None:
        return
    top = workspace.mount_path.rstrip("/")
    for mount in volume_mounts:
        path = posixpath.normpath(str(mount.get("path", "")))
        if path == top or path.startswith(top + "/") or top.startswith(path.rstrip("/") + "/"):
            raise E.InvalidArgument(f"a volume at {path} and the workspace at {top} overlap")
