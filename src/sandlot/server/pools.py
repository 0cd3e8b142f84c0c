"""Warm pools: sandboxes made ahead per template (and per snapshot that asks for one), at the lowest
CPU weight, each warmed with one login shell (and its code interpreter's default context), claimed
by creates that ask for nothing a pool sandbox lacks."""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import _exceptions as E
from ..runtimes.interface import RuntimeSandbox
from ..runtimes.policy import Limits, SandboxSpec, SecurityPolicy
from .agent_client import AgentClient
from .code_contexts import KernelSession

if TYPE_CHECKING:
    from .live import CreateRequest
    from .service import SandboxService

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
    def __init__(self, service: SandboxService):
        self.service = service
        self._lists: dict[str, list[Pooled]] = {}
        self._filling: dict[str, asyncio.Task] = {}
        self._closed = False

    def stop(self) -> None:
        self._closed = True

    async def close(self) -> None:
        """Kill the warm sandboxes. A refill may be inside runtime.create (a thread): it finishes
        and kills what it made, rather than the await being cancelled and the sandbox leaked."""
        self.stop()
        await asyncio.gather(*self._filling.values(), return_exceptions=True)
        pooled = [p.rt.sandbox_id for pool in self._lists.values() for p in pool]
        self._lists.clear()
        for sid in pooled:
            await asyncio.to_thread(self.service.runtime.kill, sid)

    def claim(self, req: CreateRequest) -> Pooled | None:
        # Pooled sandboxes start with default limits and no env vars (the agent reads its env vars
        # at start), so only matching requests may take one.
        pool = self._lists.get(req.template)
        if not pool or req.envs or req.limits != Limits() or req.volume_mounts or req.workspace \
                or req.security != SecurityPolicy():
            return None
        while pool:
            pooled = pool.pop()
            if self.service.runtime.alive(pooled.rt):
                self.service.runtime.foreground(pooled.rt.sandbox_id)
                self.refill(req.template, delay=REFILL_DELAY if pool else 0)
                return pooled
            log.warning("pooled sandbox %s died while idle; discarding it", pooled.rt.sandbox_id)
            asyncio.get_running_loop().run_in_executor(None, self.service.runtime.kill, pooled.rt.sandbox_id)
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
            template = await self.service._template(name, wait=True)
            pool = self._lists.setdefault(name, [])
            # drop (a snapshot deleted or replaced) unregisters the list: stop filling it
            while not self._closed and self._lists.get(name) is pool and len(pool) < self.service.config.pool_size:
                spec = SandboxSpec(new_sandbox_id(), name, background=True,
                                   network_ready=self.service.config.egress != "off")
                rt = await asyncio.to_thread(self.service.runtime.create, spec, template)
                kernels = None
                if not self._closed and self._lists.get(name) is pool:
                    kernels = self.service._kernels(rt, template)
                    await _warm_up(rt, kernels)
                if self._closed or self._lists.get(name) is not pool:
                    await asyncio.to_thread(self.service.runtime.kill, rt.sandbox_id)
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
            await asyncio.to_thread(self.service.runtime.kill, pooled.rt.sandbox_id)


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
