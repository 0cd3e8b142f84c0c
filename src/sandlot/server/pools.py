"""Warm pools: sandboxes made ahead per template (and per snapshot that asks for one), at the lowest
CPU weight, each warmed with one login shell (and its code interpreter's default context), claimed
by creates that ask for nothing a pool sandbox lacks.

A pool sizes itself to demand: it keeps SANDLOT_POOL_SIZE sandboxes, or as many as were claimed from
it in the last SANDLOT_POOL_WINDOW seconds if more (a burst is followed by more warm sandboxes for
the next one), up to SANDLOT_POOL_MAX; and all pools together stay within SANDLOT_POOL_MEMORY_MB of what
their sandboxes measurably use. Past the window the surplus is killed, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import _exceptions as E
from ..runtimes.interface import Runtime, RuntimeSandbox
from ..runtimes.policy import Limits, SandboxSpec, SecurityPolicy
from ..templates.spec import Template
from .agent_client import AgentClient
from .code_contexts import KernelSession
from .config import Config
from .live import CreateRequest, kernel_session

log = logging.getLogger("sandlot.service")

# A claim refills its pool this much later: a create is mostly followed at once by its first
# commands, which should not share the CPU (or the GIL) with the next sandbox's start.
REFILL_DELAY = 0.1
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_sandbox_id() -> str:
    # E2B's proxy splits hosts on '-' and '.', so ids use neither.
    return "i" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(19))


@dataclass
class Pooled:
    """A warm sandbox waiting to be claimed, with its code interpreter already started."""

    rt: RuntimeSandbox
    kernels: KernelSession | None
    spec: SandboxSpec


class Pools:
    def __init__(self, config: Config, runtime: Runtime, template_of: Callable[..., Awaitable[Template]]):
        """`template_of(name, wait=True)`: the template or snapshot a pool is named after, once built."""
        self.config, self.runtime, self.template_of = config, runtime, template_of
        self._lists: dict[str, list[Pooled]] = {}
        self._filling: dict[str, asyncio.Task] = {}
        self._claims: dict[str, deque[float]] = {}  # when each recent claim was made, per pool
        self._trims: dict[str, asyncio.TimerHandle] = {}
        self._closed = False

    def target(self, name: str) -> int:
        """How many warm sandboxes the pool of `name` keeps now."""
        config = self.config
        if not config.pool_size:
            return 0
        claims = self._claims.get(name, ())
        horizon = time.monotonic() - config.pool_window
        while claims and claims[0] < horizon:
            claims.popleft()
        return min(max(config.pool_size, len(claims)), max(config.pool_max, config.pool_size))

    def _memory_mb(self, sandbox_ids: list[str]) -> float:
        """What these warm sandboxes use now (their cgroups' memory)."""
        total = 0
        for sandbox_id in sandbox_ids:
            try:
                total += self.runtime.usage(sandbox_id).memory_bytes
            except Exception:  # gone meanwhile: a claim finds it dead and discards it
                pass
        return total / (1 << 20)

    async def _room(self, name: str, pool: list[Pooled]) -> bool:
        """One more for `name`: under its target, and, past its base size, within the memory budget
        (the base size is kept whatever the budget: SANDLOT_POOL_SIZE is the operator's own). The
        budget reads every pooled sandbox's cgroup (~0.2 ms each): in a thread, not on the loop."""
        if len(pool) >= self.target(name):
            return False
        if len(pool) < self.config.pool_size:
            return True
        warm = [p.rt.sandbox_id for each in self._lists.values() for p in each]  # on the loop: a stable view
        return await asyncio.to_thread(self._memory_mb, warm) < self.config.pool_memory_mb

    def _note_claim(self, name: str) -> None:
        self._claims.setdefault(name, deque(maxlen=1024)).append(time.monotonic())
        handle = self._trims.pop(name, None)
        if handle is not None:
            handle.cancel()
        self._trims[name] = asyncio.get_running_loop().call_later(self.config.pool_window + 1, self._trim, name)

    def _trim(self, name: str) -> None:
        """Kill what a pool holds past its target, oldest first (demand went down)."""
        self._trims.pop(name, None)
        pool = self._lists.get(name)
        if not pool or self._closed:
            return
        surplus = len(pool) - self.target(name)
        if surplus > 0:
            gone, pool[:] = pool[:surplus], pool[surplus:]
            loop = asyncio.get_running_loop()
            for pooled in gone:
                loop.run_in_executor(None, self.runtime.kill, pooled.rt.sandbox_id)
            log.info("pool %s: %d warm sandbox(es) fewer, demand went down", name, surplus)

    def stop(self) -> None:
        self._closed = True
        for handle in self._trims.values():
            handle.cancel()
        self._trims.clear()

    async def close(self) -> None:
        """Kill the warm sandboxes. A refill may be inside runtime.create (a thread): it finishes
        and kills what it made, rather than the await being cancelled and the sandbox leaked."""
        self.stop()
        await asyncio.gather(*self._filling.values(), return_exceptions=True)
        pooled = [p.rt.sandbox_id for pool in self._lists.values() for p in pool]
        self._lists.clear()
        for sid in pooled:
            await asyncio.to_thread(self.runtime.kill, sid)

    def claim(self, req: CreateRequest) -> Pooled | None:
        # Pooled sandboxes start with default limits and no env vars (the agent reads its env vars
        # at start), so only matching requests may take one.
        pool = self._lists.get(req.template)
        if pool is None or req.envs or req.limits != Limits() or req.volume_mounts or req.workspace \
                or req.security != SecurityPolicy():
            return None
        self._note_claim(req.template)  # asked of the pool, taken or not: its demand
        while pool:
            pooled = pool.pop()
            if self.runtime.alive(pooled.rt):
                self.runtime.foreground(pooled.rt.sandbox_id)
                self.refill(req.template, delay=REFILL_DELAY if pool else 0)
                return pooled
            log.warning("pooled sandbox %s died while idle; discarding it", pooled.rt.sandbox_id)
            asyncio.get_running_loop().run_in_executor(None, self.runtime.kill, pooled.rt.sandbox_id)
        self.refill(req.template)
        return None

    def refill(self, template: str, delay: float = 0) -> None:
        task = self._filling.get(template)
        if task is None or task.done():
            self._filling[template] = asyncio.create_task(self._fill(template, delay))

    async def _fill(self, name: str, delay: float = 0) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            template = await self.template_of(name, wait=True)
            pool = self._lists.setdefault(name, [])
            # drop (a snapshot deleted or replaced) unregisters the list: stop filling it
            while not self._closed and self._lists.get(name) is pool and await self._room(name, pool):
                spec = SandboxSpec(new_sandbox_id(), name, background=True,
                                   network_ready=self.config.egress != "off")
                rt = await asyncio.to_thread(self.runtime.create, spec, template)
                kernels = None
                if not self._closed and self._lists.get(name) is pool:
                    kernels = kernel_session(rt, template, self.config.max_output_bytes)
                    await _warm_up(rt, kernels)
                if self._closed or self._lists.get(name) is not pool:
                    await asyncio.to_thread(self.runtime.kill, rt.sandbox_id)
                    return
                pool.append(Pooled(rt, kernels, spec))
        except asyncio.CancelledError:
            raise
        except E.NotFound as e:  # a snapshot deleted meanwhile
            log.info("no pool for %s: %s", name, e.message)
        except Exception:
            log.exception("could not fill the pool for template %s", name)

    def sizes(self) -> dict[str, int]:
        """Warm sandboxes ready per template."""
        return {name: len(pool) for name, pool in self._lists.items()}

    async def drop(self, name: str) -> None:
        """Kill the warm sandboxes of `name` (a snapshot deleted or replaced)."""
        for pooled in self._lists.pop(name, []):
            await asyncio.to_thread(self.runtime.kill, pooled.rt.sandbox_id)


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
