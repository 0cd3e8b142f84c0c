"""Sandbox lifecycle: create (from a warm pool when possible), timeouts, kill, pause, adoption.

States: running -> paused -> running, and running|paused -> killed (final). The store is written
before and after every runtime action, so a crash at any point leaves a record that the next start
resolves: live sandboxes are adopted, broken ones are killed and marked so.

A sandbox's network (issue 12) is part of its lifecycle here: what the operator allows
(SANDLOT_EGRESS) and the runtime can give, the pool's links made ahead, live updates one at a time,
adoption; the substance is in runtimes/network.py. Over 400 lines for that reason: these are the
calls the lifecycle makes at each of its steps, not a separate concern.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import secrets
import string
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from .. import _exceptions as E
from ..runtimes.interface import Runtime, RuntimeSandbox
from ..runtimes.policy import Limits, NetworkPolicy, SandboxSpec, SecurityPolicy, Workspace
from ..templates.spec import Template
from .agent_client import AgentClient
from .builds import TemplateBuilds
from .config import Config
from .code_contexts import KernelSession
from .events import Events
from .journal import Journal
from .quotas import Holding, Quotas
from .store import SandboxRecord, Store
from .throttle import ByteRate
from .teams import DEFAULT_TEAM
from .volumes import volume_binds

if TYPE_CHECKING:
    from ..volumes import VolumeStore
    from .lifecycle import Lifecycle
    from .snapshots import Snapshots

log = logging.getLogger("sandlot.service")

ENVD_VERSION = "0.6.4"  # the envd feature level we implement (docs/e2b.md §3.14)
REAP_INTERVAL = 0.2
# A claim refills its pool this much later: a create is mostly followed at once by its first
# commands, which should not share the CPU (or the GIL) with the next sandbox's start.
REFILL_DELAY = 0.1
METRICS_INTERVAL = 5.0  # E2B's sampling period
METRICS_KEPT = 720  # an hour of samples per sandbox
# Reading a sandbox's disk use walks its writable layer (300k files: seconds of a thread, holding
# the GIL). Walks run in a thread of their own (creates and kills keep the default executor), one
# at a time, at most one per sandbox in flight; a reading is fresh for METRICS_INTERVAL, and one
# that took t seconds for DISK_WALK_SPACING * t, so walks keep that thread busy at most
# ~1/DISK_WALK_SPACING of the time however many clients poll. A reader never waits for a walk
# but a sandbox's first: it gets the last reading while the next is taken.
USAGE_THREADS = 1
DISK_WALK_SPACING = 10
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_sandbox_id() -> str:
    # E2B's proxy splits hosts on '-' and '.', so ids use neither.
    return "i" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(19))


@dataclass
class LiveSandbox:
    """A sandbox the control plane can talk to (also the envd front door's SandboxHandle)."""

    record: SandboxRecord
    rt: RuntimeSandbox | None  # None while paused in filesystem mode (lifecycle.py): nothing runs
    agent: AgentClient | None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    default_user: str = "user"
    kernels: KernelSession | None = None  # code contexts, if the template has kernels
    samples: deque = field(default_factory=lambda: deque(maxlen=METRICS_KEPT))  # see _sample
    output_rate: ByteRate | None = None  # command output relayed to clients (throttle.py); None: unbounded
    disk: tuple[float, int] | None = None  # (fresh until, bytes): the last reading of its disk use
    disk_cpu_ns: int = -1  # the sandbox's CPU time when its disk was last walked
    walking: asyncio.Future | None = None  # the walk taking the next one

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def team(self) -> str:
        return self.record.team

    @property
    def access_token(self) -> str | None:
        return self.record.access_token

    @property
    def envs(self) -> dict[str, str]:
        return self.record.envs


@dataclass
class Pooled:
    """A warm sandbox waiting to be claimed, with its code interpreter already started."""

    rt: RuntimeSandbox
    kernels: KernelSession | None
    spec: SandboxSpec


@dataclass
class CreateRequest:
    template: str
    timeout: int
    metadata: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    auto_pause: bool = False
    secure: bool = True
    # lifecycle (lifecycle.py): what a pause on timeout keeps, whether requests resume it
    auto_pause_mode: str = "full"
    auto_resume: bool = False
    stack: Template | None = None  # a fork's children: this stack instead of the template's
    volume_mounts: list[dict] = field(default_factory=list)  # [{"name", "path"}] (volumes.py)
    team: str = DEFAULT_TEAM  # the creating key's (teams.py)
    # issue 13: a codebase with path permissions, and Alphora's security knobs
    workspace: Workspace | None = None
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    egress: NetworkPolicy | None = None  # None: no network, only loopback
    network: dict = field(default_factory=dict)  # ingress settings as the API took them (issue 12)


class SandboxService:
    def __init__(self, config: Config, store: Store, runtime: Runtime, templates, events: Events | None = None):
        self.config = config
        self.events = events or Events()  # log lines and metrics of lifecycle events
        self.store = store
        self.runtime = runtime
        self.templates = templates
        self.builds = TemplateBuilds(templates)  # in worker processes, so that shutdown is prompt
        self.live: dict[str, LiveSandbox] = {}
        self.paused: dict[str, LiveSandbox] = {}
        self._pools: dict[str, list[Pooled]] = {}
        self._pool_refill: dict[str, asyncio.Task] = {}
        self._reaper: asyncio.Task | None = None
        self._exit_fds: dict[str, int] = {}  # running sandbox -> pidfd of its outermost process
        self._exited: set[str] = set()  # running sandboxes whose process ended (the reaper ends them)
        self._polled: set[str] = set()  # running sandboxes with no pidfd: the reaper asks the runtime
        self._sampler: asyncio.Task | None = None
        self._closing = False
        # set by the app: pause modes, cold resume, wake (lifecycle.Lifecycle); snapshots a create
        # may name (snapshots.Snapshots); volumes (volumes.VolumeStore)
        self.lifecycle: Lifecycle = None  # type: ignore[assignment]
        self.snapshots: Snapshots | None = None
        self.volumes: VolumeStore | None = None
        self.journal = Journal()  # each sandbox's log (logs_api.py)
        self._net_locks: dict[str, asyncio.Lock] = {}  # a sandbox's network changes, one at a time
        # team quotas and host memory, checked on create and resume (quotas.py)
        self.quotas = Quotas(store.teams, self._holdings, overcommit=config.memory_overcommit,
                             reserve_mb=config.host_memory_reserve_mb)
        self._usage = ThreadPoolExecutor(USAGE_THREADS, thread_name_prefix="sandlot-usage")  # metrics readings

    # ---- start and stop ----------------------------------------------------------------------

    async def startup(self) -> None:
        for warning in self.runtime.degradations():
            log.warning("DEGRADED ISOLATION: %s", warning)
        await asyncio.to_thread(self._adopt_all)
        for live in self.live.values():
            self._watch_exit(live)
        self._reaper = asyncio.create_task(self._reap_loop(), name="sandlot-reaper")
        self._sampler = asyncio.create_task(self._sample_loop(), name="sandlot-metrics")
        for name in self.config.pool_templates:
            if self.config.pool_size > 0:
                self._schedule_refill(name)

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
                self._adopt_network(rec, running=False)  # its network comes back at resume
                live = self.lifecycle.adopt_paused(rec)
                if live is not None:
                    self.paused[rec.id] = live
                    self.journal.record(rec.id, "adopted after a server restart (paused, files only)")
                    continue
            if rt is None:
                log.warning("sandbox %s did not survive the restart: cleaning up", rec.id)
                self._kill_leftover(rec.id)
                self.store.update(rec.id, state="killed", ended_at=time.time(), end_reason="lost on restart")
                continue
            self._adopt_network(rec)
            try:
                # a sandbox from a snapshot runs on the snapshot's built template
                kernels = self._kernels(rt, self.templates.describe(rec.stack.get("template", rec.template)))
            except E.NotFound:
                kernels = None
            live = self._live(rec, rt, kernels)
            (self.paused if rec.state == "paused" else self.live)[rec.id] = live
            self.journal.record(rec.id, f"adopted after a server restart ({rec.state})")
            log.info("adopted sandbox %s (%s)", rec.id, rec.state)
        for sid in self.runtime.leftovers() - known:
            log.info("removing leftover sandbox resources %s", sid)
            self._kill_leftover(sid)

    def _adopt_network(self, rec: SandboxRecord, running: bool = True) -> None:
        egress = egress_of(rec)
        if egress is None:
            return
        try:
            if self.config.egress == "off":  # started sealed: what an earlier run gave is taken away
                log.warning("sandbox %s: its network is removed (SANDLOT_EGRESS=off)", rec.id)
                if running:
                    self.runtime.set_network(rec.id, None)
                rec.network = _network_record(None, (rec.network or {}).get("ingress", {}))
                self.store.update(rec.id, network=rec.network)
            elif running:  # the table outlived the server; the resolver must know it again
                self.runtime.set_network(rec.id, egress, adopting=True)
        except Exception:
            log.exception("sandbox %s: could not take its network over again", rec.id)

    def _kill_leftover(self, sandbox_id: str) -> None:
        """Whatever a dead sandbox left must never stop the server from starting: what cannot be
        removed now stays a leftover, retried at the next start."""
        try:
            self.runtime.kill(sandbox_id)
        except Exception:
            log.exception("could not clean up sandbox %s", sandbox_id)

    async def shutdown(self) -> None:
        self._closing = True
        for task in (self._reaper, self._sampler):
            if task:
                task.cancel()
        for sid in list(self._exit_fds):
            self._unwatch_exit(sid)
        await self.builds.close()  # refills waiting for a build end with it
        # A refill may be inside runtime.create (a thread): let it finish and kill what it made,
        # rather than cancel the await and leak the sandbox the thread still creates.
        await asyncio.gather(*self._pool_refill.values(), return_exceptions=True)
        pooled = [p.rt.sandbox_id for pool in self._pools.values() for p in pool]
        self._pools.clear()
        for sid in pooled:
            await asyncio.to_thread(self.runtime.kill, sid)
        if self.config.kill_on_shutdown:
            for sid in list(self.live):
                await self.kill(sid, reason="server shutdown")
            for live in list(self.paused.values()):  # paused ones keep their files (lifecycle.py)
                await self.lifecycle.keep_paused(live)
        await asyncio.to_thread(self.runtime.close)
        self._usage.shutdown(wait=False, cancel_futures=True)

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
        self._check_timeout(req.timeout, minimum=1)
        req.limits.validate()
        req.egress = self._egress_here(req.egress)
        with self.quotas.admit(req.team, req.limits):  # its share is held until it is listed
            return await self._create_admitted(req)

    async def _create_admitted(self, req: CreateRequest) -> tuple[LiveSandbox, bool]:
        # TemplateBuilding (503) while it builds; a fork's children come with their stack
        template = req.stack or await self._template(req.template)
        pooled = self._claim_pooled(req) if req.stack is None else None
        if pooled is not None:
            try:  # a pool sandbox has its link made, unconfigured; configure it or take it away
                await self._network_of_pooled(pooled, req.egress)
            except BaseException:
                asyncio.get_running_loop().run_in_executor(None, self.runtime.kill, pooled.rt.sandbox_id)
                raise
        if pooled is None:
            _apart(req.workspace, req.volume_mounts)  # before a volume is mounted
            volumes = await asyncio.to_thread(self.volume_binds, req.volume_mounts, req.team)
            spec = SandboxSpec(new_sandbox_id(), req.template, req.limits, envs=req.envs, volumes=volumes,
                               workspace=req.workspace, security=req.security, network=req.egress)
            rt = await asyncio.to_thread(self.runtime.create, spec, template)
            kernels = self._kernels(rt, template)
            if kernels is not None and req.security.max_output_size:  # the policy's output cap, per run
                kernels.max_output = min(kernels.max_output, req.security.max_output_size)
            if kernels is not None:  # its first run_code should not wait for a whole kernel start
                _log_failure(kernels.start(), rt.sandbox_id)
        else:
            rt, kernels, spec = pooled.rt, pooled.kernels, replace(pooled.spec, network=req.egress)
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
            network=_network_record(req.egress, req.network))
        self.store.insert(rec)
        live = self._live(rec, rt, kernels)
        self.live[rec.id] = live
        self._watch_exit(live)
        self.journal.record(rec.id, f"created from template {req.template}", template=req.template,
                            timeout=req.timeout, pooled=pooled is not None, **asdict(req.limits))
        return live, pooled is not None

    def _live(self, rec: SandboxRecord, rt: RuntimeSandbox | None, kernels: KernelSession | None) -> LiveSandbox:
        """The control plane's handle on a sandbox (rt None: paused with its files only)."""
        agent = self.journal.recording(rec.id, AgentClient(str(rt.socket_path))) if rt is not None else None
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

    def _kernels(self, rt: RuntimeSandbox, template: Template) -> KernelSession | None:
        if not template.kernels:
            return None
        return KernelSession(AgentClient(str(rt.socket_path)), "user", self.config.max_output_bytes)

    def _claim_pooled(self, req: CreateRequest) -> Pooled | None:
        # Pooled sandboxes start with default limits and no env vars (the agent reads its env vars
        # at start), so only matching requests may take one.
        pool = self._pools.get(req.template)
        if not pool or req.envs or req.limits != Limits() or req.volume_mounts or req.workspace \
                or req.security != SecurityPolicy():
            return None
        while pool:
            pooled = pool.pop()
            if self.runtime.alive(pooled.rt):
                self.runtime.foreground(pooled.rt.sandbox_id)
                self._schedule_refill(req.template, delay=REFILL_DELAY if pool else 0)
                return pooled
            log.warning("pooled sandbox %s died while idle; discarding it", pooled.rt.sandbox_id)
            asyncio.get_running_loop().run_in_executor(None, self.runtime.kill, pooled.rt.sandbox_id)
        self._schedule_refill(req.template)
        return None

    def _schedule_refill(self, template: str, delay: float = 0) -> None:
        task = self._pool_refill.get(template)
        if task is None or task.done():
            self._pool_refill[template] = asyncio.create_task(self._refill(template, delay))

    async def _refill(self, name: str, delay: float = 0) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            template = await self._template(name, wait=True)
            pool = self._pools.setdefault(name, [])
            # drop_pool (a snapshot deleted or replaced) unregisters the list: stop filling it
            while not self._closing and self._pools.get(name) is pool and len(pool) < self.config.pool_size:
                spec = SandboxSpec(new_sandbox_id(), name, background=True,
                                   network_ready=self.config.egress != "off")
                rt = await asyncio.to_thread(self.runtime.create, spec, template)
                kernels = None
                if not self._closing and self._pools.get(name) is pool:
                    kernels = self._kernels(rt, template)
                    await _warm_up(rt, kernels)
                if self._closing or self._pools.get(name) is not pool:
                    await asyncio.to_thread(self.runtime.kill, rt.sandbox_id)
                    return
                pool.append(Pooled(rt, kernels, spec))
        except asyncio.CancelledError:
            raise
        except E.NotFound as e:  # a snapshot deleted meanwhile
            log.info("no pool for %s: %s", name, e.message)
        except Exception:
            log.exception("could not fill the pool for template %s", name)

    # ---- lookups -----------------------------------------------------------------------------

    def _known(self, sandbox_id: str, table: dict[str, LiveSandbox] | None = None) -> LiveSandbox:
        """The sandbox from `table` (default: running or paused), or NotFound."""
        live = table.get(sandbox_id) if table is not None else \
            self.live.get(sandbox_id) or self.paused.get(sandbox_id)
        if live is None:
            raise E.NotFound(f"sandbox \"{sandbox_id}\" not found")
        return live

    def _check_timeout(self, timeout: int, minimum: int = 0) -> None:
        if not minimum <= timeout <= self.config.max_timeout:
            raise E.InvalidArgument(f"timeout must be between {minimum} and {self.config.max_timeout} seconds")

    def record(self, sandbox_id: str) -> SandboxRecord:
        return self._known(sandbox_id).record

    def team_of(self, sandbox_id: str) -> str | None:
        """The team owning a sandbox this server runs, holds paused or ran; None if unknown (the
        routes' team check, auth.py)."""
        live = self.live.get(sandbox_id) or self.paused.get(sandbox_id)
        if live is not None:
            return live.record.team
        rec = self.store.get(sandbox_id)
        return rec.team if rec is not None else None

    def _holdings(self) -> list[Holding]:
        """What the running and paused sandboxes hold, and the volumes (quotas.py). A sandbox paused
        with its files only holds no memory."""
        found = []
        for live in (*self.live.values(), *self.paused.values()):
            limits = live.record.limits
            memory = 0 if live.rt is None else limits.get("memory_mb", Limits.memory_mb)
            found.append(Holding(live.id, live.record.team, memory, limits.get("disk_mb", Limits.disk_mb),
                                 live.record.state == "running"))
        if self.volumes is not None:
            found.extend(Holding(f"volume:{v.id}", v.team, 0, v.size_mb, running=False) for v in self.volumes.list())
        return found

    def get_running(self, sandbox_id: str) -> LiveSandbox | None:
        return self.live.get(sandbox_id)

    def running(self) -> list[LiveSandbox]:
        return list(self.live.values())

    def pool_sizes(self) -> dict[str, int]:
        """Warm sandboxes ready per template."""
        return {name: len(pool) for name, pool in self._pools.items()}

    def listed(self) -> list[SandboxRecord]:
        return [s.record for s in (*self.live.values(), *self.paused.values())]

    # ---- lifecycle changes -------------------------------------------------------------------

    async def kill(self, sandbox_id: str, reason: str = "killed") -> None:
        # after a snapshot, fork or pause of it in progress (lifecycle.py's lock)
        async with self.lifecycle.lock(sandbox_id):
            await self._kill(sandbox_id, reason)

    async def _kill(self, sandbox_id: str, reason: str) -> None:
        started = time.monotonic()
        self._known(sandbox_id)
        live = self.live.pop(sandbox_id, None) or self.paused.pop(sandbox_id)
        self._net_locks.pop(sandbox_id, None)
        self._unwatch_exit(sandbox_id)
        live.closed.set()
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

    async def drop_pool(self, name: str) -> None:
        """Kill the warm sandboxes of `name` (a snapshot deleted or replaced)."""
        for pooled in self._pools.pop(name, []):
            await asyncio.to_thread(self.runtime.kill, pooled.rt.sandbox_id)

    async def wake(self, sandbox_id: str) -> None:
        """The auto-resume hook (envd requests, the port proxy): see lifecycle.wake."""
        await self.lifecycle.wake(sandbox_id)

    # ---- network (issue 12; the substance is in runtimes/network.py) -------------------------

    async def _network_of_pooled(self, pooled: Pooled, egress: NetworkPolicy | None) -> None:
        rt = pooled.rt
        if egress is not None:
            await asyncio.to_thread(self.runtime.set_network, rt.sandbox_id, egress)
        elif pooled.spec.network_ready:  # its unconfigured link goes after the create has answered (~20-50 ms)
            loop = asyncio.get_running_loop()
            loop.call_later(REFILL_DELAY, lambda: loop.create_task(self._drop_unused_link(rt.sandbox_id)))

    async def _drop_unused_link(self, sandbox_id: str) -> None:
        async with self._network_lock(sandbox_id):  # not over a network given meanwhile
            live = self.live.get(sandbox_id) or self.paused.get(sandbox_id)
            if live is None or (live.record.network or {}).get("egress") is not None:
                return
            try:
                await asyncio.to_thread(self.runtime.set_network, sandbox_id, None)
            except (E.NotFound, E.SandboxNotRunning):  # killed meanwhile: kill removed the link
                pass
            except Exception:
                log.exception("sandbox %s: could not remove its unused link", sandbox_id)

    def _network_lock(self, sandbox_id: str) -> asyncio.Lock:
        lock = self._net_locks.get(sandbox_id)
        if lock is None:
            lock = self._net_locks[sandbox_id] = asyncio.Lock()
        return lock

    def _egress_here(self, egress: NetworkPolicy | None) -> NetworkPolicy | None:
        """What this server gives: with SANDLOT_EGRESS=off, or where the runtime has no networks, a
        bare `allow_internet_access: true` (which the e2b SDK up to 2.50 sends on every create)
        gets no network, and getInfo says so; rules are refused (403 where the operator turned
        egress off, 501 where the runtime cannot enforce them)."""
        if egress is None:
            return None
        off = self.config.egress == "off"
        missing = "outbound access is off on this server (SANDLOT_EGRESS=off)" if off else \
            getattr(self.runtime, "network_missing", None)
        if missing is None:
            return egress
        if egress == NetworkPolicy():
            log.info("no network for a sandbox that asked for internet access: %s", missing)
            return None
        if off:
            raise E.PermissionDenied(f"sandboxes get no outbound network here: {missing}; allowOut, denyOut, "
                                     "dnsServers and bandwidthMbps are refused")
        raise E.Unsupported(f"this server cannot give sandboxes a network: {missing}")

    async def update_network(self, sandbox_id: str, egress: NetworkPolicy | None) -> None:
        """Replace the sandbox's egress policy live (E2B's PUT /sandboxes/{id}/network)."""
        live = self._known(sandbox_id)
        egress = self._egress_here(egress)
        async with self._network_lock(sandbox_id):
            await asyncio.to_thread(self.runtime.set_network, sandbox_id, egress)
            live.record.network = _network_record(egress, (live.record.network or {}).get("ingress", {}))
            self.store.update(sandbox_id, network=live.record.network)
        network = egress.describe() if egress is not None else "none"
        log.info("sandbox %s network updated: %s", sandbox_id, network)
        self.journal.record(sandbox_id, f"network updated: {network}", network=network)

    def set_ingress(self, sandbox_id: str, **fields) -> None:
        """Change the ingress settings the port proxy reads (server/proxy.py), e.g. exposures."""
        rec = self.record(sandbox_id)
        net = rec.network or _network_record(None, {})
        net["ingress"] = {**(net.get("ingress") or {}), **fields}
        rec.network = net
        self.store.update(sandbox_id, network=net)

    def network_usage(self, sandbox_id: str) -> tuple[int, int]:
        usage = getattr(self.runtime, "network_usage", None)
        return usage(sandbox_id) if usage else (0, 0)

    def set_timeout(self, sandbox_id: str, timeout: int) -> None:
        self._check_timeout(timeout)
        rec = self.record(sandbox_id)
        rec.end_at = time.time() + timeout
        self.store.update(sandbox_id, end_at=rec.end_at)
        self.journal.record(sandbox_id, f"timeout set: ends in {timeout}s", timeout=timeout)

    async def connect(self, sandbox_id: str, timeout: int | None) -> tuple[LiveSandbox, bool]:
        """Make sure the sandbox runs (resuming it if paused); extend, never shorten, its timeout.

        Returns the sandbox and whether it was resumed.
        """
        if timeout is not None:  # before resuming: a refused request changes nothing
            self._check_timeout(timeout)
        resumed = False
        if sandbox_id in self.paused:
            await self.resume(sandbox_id)
            resumed = True
        live = self._known(sandbox_id, self.live)
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

    async def _freeze_pause(self, sandbox_id: str) -> None:
        if sandbox_id in self.paused:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already paused")
        live = self._known(sandbox_id, self.live)
        try:
            await asyncio.to_thread(self.runtime.freeze, sandbox_id, True)
        except OSError:  # its cgroup may be gone: killed meanwhile
            self._check_still(sandbox_id, live, self.live)
            raise
        self._check_still(sandbox_id, live, self.live)
        del self.live[sandbox_id]
        self._unwatch_exit(sandbox_id)  # a paused sandbox is not looked after; its resume looks again
        live.closed.set()  # open streams end: a paused sandbox answers like a gone one
        live.closed = asyncio.Event()
        self.paused[sandbox_id] = live
        live.record.state = "paused"
        self.store.update(sandbox_id, state="paused")
        self.journal.record(sandbox_id, "paused")
        self.events.paused(sandbox_id, team=live.team)

    async def _thaw(self, sandbox_id: str, timeout: int | None = None) -> LiveSandbox:
        if timeout is not None:  # as on create: it runs again for `timeout` seconds
            self._check_timeout(timeout, minimum=1)
        if sandbox_id in self.live:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already running")
        live = self._known(sandbox_id, self.paused)
        try:
            with self.quotas.admit(live.record.team, Limits(**live.record.limits), sandbox_id):
                await asyncio.to_thread(self.runtime.freeze, sandbox_id, False)
        except OSError:
            self._check_still(sandbox_id, live, self.paused)
            raise
        self._check_still(sandbox_id, live, self.paused)
        del self.paused[sandbox_id]
        self.live[sandbox_id] = live
        self._watch_exit(live)
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
        if sandbox_id in self.paused:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already paused")
        if sandbox_id in self.live:
            raise E.AlreadyExists(f"sandbox \"{sandbox_id}\" is already running")
        raise E.NotFound(f"sandbox \"{sandbox_id}\" not found")

    async def metrics(self, sandbox_id: str, start: float | None = None, end: float | None = None) -> list[dict]:
        """Samples taken every METRICS_INTERVAL s within [start, end] (unix s), and one taken now if
        `end` is not in the past (in a thread: it walks the sandbox's writable layer)."""
        live = self._known(sandbox_id)
        if start is not None and end is not None and start > end:
            raise E.InvalidArgument("start must not be after end")
        found = [m for m in live.samples if (start is None or m["timestamp"] >= start)
                 and (end is None or m["timestamp"] <= end)]
        now = time.time()
        if live.rt is not None and (end is None or end >= now) and (start is None or start <= now):
            disk = await self._disk_used(live)
            found.append(await asyncio.to_thread(self._sample, live, now, disk))  # a few cgroup files
        return found

    async def _disk_used(self, live: LiveSandbox) -> int:
        """The sandbox's disk use as last read; a stale reading starts the next walk (USAGE_THREADS)."""
        if live.disk is not None and time.monotonic() < live.disk[0]:
            return live.disk[1]
        if live.walking is None or live.walking.done():
            live.walking = asyncio.get_running_loop().run_in_executor(self._usage, self._walk, live)
            live.walking.add_done_callback(_walked)
        if live.disk is not None:
            return live.disk[1]
        return await asyncio.shield(live.walking)

    def _walk(self, live: LiveSandbox) -> int:
        started = time.monotonic()
        cpu_ns = self.runtime.usage(live.id).cpu_usage_ns
        if live.disk is not None and live.disk_cpu_ns == cpu_ns:
            # nothing ran in the sandbox since the last walk (its agent writes files too), so nothing
            # wrote to its layer: the walk (~0.3 ms for an idle sandbox) is skipped
            used, took = live.disk[1], 0.0
        else:
            used = self.runtime.disk_used(live.id)
            took = time.monotonic() - started
        live.disk, live.disk_cpu_ns = (time.monotonic() + max(METRICS_INTERVAL, DISK_WALK_SPACING * took), used), cpu_ns
        return used

    def _sample(self, live: LiveSandbox, now: float, disk_used: int) -> dict:
        """One reading; cpu is the share used since the previous sample (or since the start)."""
        usage = self.runtime.usage(live.id)
        limits = Limits(**live.record.limits)
        before = live.samples[-1] if live.samples else {"timestamp": live.record.started_at, "cpu_ns": 0}
        elapsed_ns = max(now - before["timestamp"], 1e-3) * 1e9
        cpu_pct = max(0.0, (usage.cpu_usage_ns - before["cpu_ns"]) / elapsed_ns / limits.cpu_count * 100)
        net_out, net_in = self.network_usage(live.id)
        return {
            "net_out": net_out, "net_in": net_in,
            "timestamp": now, "cpu_ns": usage.cpu_usage_ns,
            "cpu_count": limits.cpu_count, "cpu_used_pct": round(min(cpu_pct, 100.0), 2),
            "mem_used": usage.memory_bytes, "mem_total": limits.memory_mb * 1024 * 1024,
            "mem_cache": usage.memory_cache_bytes, "disk_used": disk_used,
            "disk_total": limits.disk_mb * 1024 * 1024,
        }

    async def _sample_loop(self) -> None:
        def sample_all(running: list[LiveSandbox], disks: dict[str, int]) -> None:
            for live in running:
                try:
                    live.samples.append(self._sample(live, time.time(), disks[live.id]))
                except Exception as e:  # gone meanwhile: the reaper deals with it
                    log.debug("no metrics for sandbox %s: %s", live.id, e)

        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            running = list(self.live.values())
            disks = {}
            for live in running:
                try:
                    disks[live.id] = await self._disk_used(live)
                except Exception:  # gone meanwhile: the reaper deals with it
                    disks[live.id] = 0
            await asyncio.to_thread(sample_all, running, disks)

    # ---- the reaper --------------------------------------------------------------------------

    # A running sandbox that ends by itself is seen through a pidfd of its outermost process, readable
    # once it exits: the loop then only compares deadlines. Asking /proc about every sandbox five
    # times a second cost the event loop ~15-40 us each (at 2000 sandboxes, a fifth of a core or
    # more, all of them idle). Where no pidfd can be had (fds exhausted, no such pid), the reaper
    # asks the runtime as before.

    def _watch_exit(self, live: LiveSandbox) -> None:
        sid = live.id
        try:
            fd = os.pidfd_open(live.rt.pid)
        except ProcessLookupError:
            self._exited.add(sid)
            return
        except OSError:
            self._polled.add(sid)
            return
        if not self.runtime.alive(live.rt):  # gone, or the pid is another process's now
            os.close(fd)
            self._exited.add(sid)
            return
        self._exit_fds[sid] = fd
        asyncio.get_running_loop().add_reader(fd, self._on_exit, sid)

    def _on_exit(self, sandbox_id: str) -> None:
        self._unwatch_exit(sandbox_id)
        self._exited.add(sandbox_id)

    def _unwatch_exit(self, sandbox_id: str) -> None:
        self._exited.discard(sandbox_id)
        self._polled.discard(sandbox_id)
        fd = self._exit_fds.pop(sandbox_id, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _ended(self, live: LiveSandbox) -> bool:
        if live.id in self._polled:
            return not self.runtime.alive(live.rt)
        return live.id in self._exited

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            now = time.time()
            # paused sandboxes keep until killed or resumed; many due at once end together, so
            # the last of them is not late by the sum of the others' kills
            due = [live for live in list(self.live.values()) if live.record.end_at <= now or self._ended(live)]
            await asyncio.gather(*(self._reap(live, now) for live in due))

    async def _reap(self, live: LiveSandbox, now: float) -> None:
        try:
            if live.record.end_at > now:
                await self.kill(live.id, reason="sandbox exited")
            elif live.record.auto_pause:
                # a workspace lives outside the sandbox's layers: only a full pause keeps it (lifecycle.py)
                await self.pause(live.id, "full" if live.record.workspace else live.record.auto_pause_mode)
            else:
                await self.kill(live.id, reason="timeout")
        except (E.NotFound, E.AlreadyExists):  # killed or paused by a request meanwhile
            pass
        except Exception:
            log.exception("reaper failed on sandbox %s", live.id)



def _network_record(egress: NetworkPolicy | None, ingress: dict) -> dict:
    return {"egress": None if egress is None else egress.as_json(), "ingress": ingress}


def egress_of(rec: SandboxRecord) -> NetworkPolicy | None:
    egress = (rec.network or {}).get("egress")
    return None if egress is None else NetworkPolicy.from_json(egress)


async def _warm_up(rt: RuntimeSandbox, kernels: KernelSession | None) -> None:
    """Run one login shell in a pooled sandbox: the agent imports what commands need on first use
    and the new overlay looks up bash and its profile once (~10 ms together), which the user's
    first command should not pay. With a code interpreter, also wait for its default context."""
    try:
        async for _ in AgentClient(str(rt.socket_path)).start("/bin/bash", ["-l", "-c", "true"]):
            pass
        if kernels is not None:
            await kernels.start()
    except Exception as e:  # a broken sandbox is found and replaced when claimed
        log.warning("warming pooled sandbox %s failed: %s", rt.sandbox_id, e)


def _walked(walk: asyncio.Future) -> None:
    """A walk nobody awaited (its readers took the last reading) failed: the sandbox went meanwhile."""
    if not walk.cancelled() and walk.exception() is not None:
        log.debug("disk use not read: %s", walk.exception())


def _apart(workspace: Workspace | None, volume_mounts: list[dict]) -> None:
    """A volume and the workspace cannot share a path: one bind would cover the other."""
    if workspace is None:
        return
    top = workspace.mount_path.rstrip("/")
    for mount in volume_mounts:
        path = posixpath.normpath(str(mount.get("path", "")))
        if path == top or path.startswith(top + "/") or top.startswith(path.rstrip("/") + "/"):
            raise E.InvalidArgument(f"a volume at {path} and the workspace at {top} overlap")


def _log_failure(started: asyncio.Future, sandbox_id: str) -> None:
    """A background start is retried by the first request that needs it; just say what went wrong."""
    def done(f: asyncio.Future) -> None:
        if not f.cancelled() and f.exception() is not None:
            log.warning("code interpreter of sandbox %s did not start: %s", sandbox_id, f.exception())
    started.add_done_callback(done)
