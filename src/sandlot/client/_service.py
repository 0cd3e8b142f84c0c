"""`SandboxService`: one live sandbox per (session, user, type), reused until released or idle.

    from sandlot import SandboxService

    service = SandboxService(idle_timeout=900)            # sandboxes unused for 15 min expire
    [sandbox] = service.connect(session_id="s1", user_id="u1")
    sandbox.commands.run("echo state > /tmp/x")
    [again] = service.connect(session_id="s1", user_id="u1")   # the same sandbox: /tmp/x is there
    service.release("s1", user_id="u1")                   # kill that session's sandboxes

AgentScope's SandboxService (connect by session and user, reuse, release) and Alphora's
SandboxManager (get_or_create, destroy_all, cleanup_idle, health_check_all, total usage) in one.

The key lives in the sandboxes' own metadata (`sandlot-service`, `-session`, `-user`, `-type`), not
in this object: another process, or this one after a restart, finds the same sandbox with
`connect()`. Idleness is the sandbox's timeout: each `connect()` pushes its end to `idle_timeout`
from now, so the server's reaper removes sandboxes nobody connected to for that long, whether or
not any service is running; `cleanup_idle()` kills them sooner. Call `connect()` once per turn of
your agent, as AgentScope does. A sandbox that died (killed, expired) is replaced on the next
`connect()`. `max_sandboxes` caps this service's namespace (best effort across processes); two
processes that create the same key at once keep the older sandbox and kill the other.
"""

from __future__ import annotations

import asyncio
import os
import builtins
import contextlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TypedDict

from .. import _exceptions as E
from ._models import SandboxInfo
from ._sandbox import AsyncSandbox

SERVICE, SESSION, USER, TYPE = "sandlot-service", "sandlot-session", "sandlot-user", "sandlot-type"
TYPES = {"base": "base", "filesystem": "base", "code": "code-interpreter"}  # AgentScope's names -> templates


class _Connection(TypedDict):
    api_url: str | None
    api_key: str | None
    ca_file: str | os.PathLike[str] | None


class AsyncSandboxService:
    """Session-keyed sandboxes (see the module docstring); `SandboxService` is the blocking form."""

    namespace: str
    """Which service the sandboxes belong to (in their metadata): services with another see none of them."""
    template: str
    """The template of sandboxes created when `connect()` names no type."""
    idle_timeout: int
    """Seconds after its last `connect()` at which a sandbox ends."""
    max_sandboxes: int | None
    """At most this many sandboxes in the namespace (None: no cap)."""

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, namespace: str = "default",
                 template: str = "base", idle_timeout: int = 1800, max_sandboxes: int | None = None,
                 envs: dict[str, str] | None = None, metadata: dict[str, str] | None = None,
                 ca_file: str | os.PathLike[str] | None = None):
        if not isinstance(idle_timeout, int) or idle_timeout < 1:
            raise E.InvalidArgument("idle_timeout is a whole number of seconds above 0")
        if max_sandboxes is not None and max_sandboxes < 1:
            raise E.InvalidArgument("max_sandboxes must be at least 1")
        self.namespace, self.template, self.idle_timeout = namespace, template, idle_timeout
        self.max_sandboxes = max_sandboxes
        self._conn = _Connection(api_url=api_url, api_key=api_key, ca_file=ca_file)
        self._envs, self._metadata = dict(envs or {}), dict(metadata or {})
        self._open: dict[tuple[str, str, str], AsyncSandbox] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} namespace={self.namespace!r} open={len(self._open)}>"

    def _key_metadata(self, session_id: str, user_id: str, kind: str) -> dict[str, str]:
        for name, value in (("session_id", session_id), ("user_id", user_id), ("type", kind)):
            if not isinstance(value, str) or not value:
                raise E.InvalidArgument(f"{name} must be a non-empty string")
        return {SERVICE: self.namespace, SESSION: session_id, USER: user_id, TYPE: kind}

    async def _find(self, metadata: dict[str, str]) -> list[SandboxInfo]:
        found = [info async for info in AsyncSandbox.list(metadata=metadata, **self._conn)]
        return sorted(found, key=lambda i: (i.started_at or datetime.max.replace(tzinfo=timezone.utc), i.sandbox_id))

    async def start(self) -> AsyncSandboxService:
        """Nothing to start (the key lives in metadata, idleness in timeouts); kept for AgentScope's
        `await service.start()`."""
        return self

    async def connect(self, session_id: str, user_id: str = "default",
                      types: Iterable[str] | None = None) -> list[AsyncSandbox]:
        """The live sandboxes of this session and user, one per type (default: this service's
        template), created when absent or dead. Types are template names; AgentScope's `base`,
        `filesystem` and `code` are understood."""
        kinds = list(types) if types is not None else [self.template]
        return [await self.get_or_create(session_id, user_id, kind) for kind in kinds]

    async def get_or_create(self, session_id: str, user_id: str = "default", type: str | None = None) -> AsyncSandbox:
        """The live sandbox for one key, reused or created (Alphora's `get_or_create`)."""
        kind = type or self.template
        metadata = self._key_metadata(session_id, user_id, kind)
        key = (session_id, user_id, kind)
        async with self._locks.setdefault(key, asyncio.Lock()):
            sandbox = self._open.pop(key, None)
            if sandbox is not None:
                if await self._touch(sandbox):
                    self._open[key] = sandbox
                    return sandbox
                await sandbox.close()
            for info in await self._find(metadata):
                with contextlib.suppress(E.NotFound, E.SandboxNotRunning):
                    sandbox = await AsyncSandbox.connect(info.sandbox_id, **self._conn)  # resumes a paused one
                    if await self._touch(sandbox):
                        self._open[key] = sandbox
                        return sandbox
                    await sandbox.close()
            self._open[key] = await self._create(metadata, kind)
            return self._open[key]

    async def _touch(self, sandbox: AsyncSandbox) -> bool:
        """Alive? Then its idle clock starts again."""
        try:
            await sandbox.set_timeout(self.idle_timeout)
            return await sandbox.is_running()
        except (E.NotFound, E.SandboxNotRunning):
            return False

    async def _create(self, metadata: dict[str, str], kind: str) -> AsyncSandbox:
        if self.max_sandboxes is not None:
            count = len(await self._find({SERVICE: self.namespace}))
            if count >= self.max_sandboxes:
                raise E.ResourceExhausted(f"this service already runs {count} sandboxes (max_sandboxes="
                                          f"{self.max_sandboxes}); release some or wait for idle ones to expire")
        sandbox = await AsyncSandbox.create(template=TYPES.get(kind, kind), timeout=self.idle_timeout,
                                            metadata={**self._metadata, **metadata}, envs=self._envs, **self._conn)
        # another process may have created one for the same key meanwhile: the older one wins
        winner = (await self._find(metadata))[0]
        if winner.sandbox_id != sandbox.sandbox_id:
            await sandbox.kill()
            await sandbox.close()
            return await AsyncSandbox.connect(winner.sandbox_id, **self._conn)
        return sandbox

    async def get(self, session_id: str, user_id: str = "default", type: str | None = None) -> AsyncSandbox | None:
        """The live sandbox for a key, or None; never creates one."""
        for info in await self._find(self._key_metadata(session_id, user_id, type or self.template)):
            with contextlib.suppress(E.NotFound, E.SandboxNotRunning):
                return await AsyncSandbox.connect(info.sandbox_id, **self._conn)
        return None

    async def list(self, session_id: str | None = None, user_id: str | None = None) -> list[SandboxInfo]:
        """This service's sandboxes (of a session, of a user), oldest first."""
        metadata = {SERVICE: self.namespace, **({SESSION: session_id} if session_id else {}),
                    **({USER: user_id} if user_id else {})}
        return await self._find(metadata)

    async def _kill(self, infos: Iterable[SandboxInfo]) -> builtins.list[str]:
        killed = []
        for info in infos:
            for key, sandbox in list(self._open.items()):
                if sandbox.sandbox_id == info.sandbox_id:
                    await self._open.pop(key).close()
            if await AsyncSandbox.kill(info.sandbox_id, **self._conn):
                killed.append(info.sandbox_id)
        return killed

    async def release(self, session_id: str, user_id: str | None = None) -> builtins.list[str]:
        """Kill a session's sandboxes (of one user, or of all); returns their ids."""
        return await self._kill(await self.list(session_id, user_id))

    async def release_all(self) -> builtins.list[str]:
        """Kill every sandbox of this service's namespace (Alphora's `destroy_all`)."""
        return await self._kill(await self.list())

    destroy_all = release_all

    def _idle_seconds(self, info: SandboxInfo, now: datetime) -> float:
        """How long since the last connect(): each one set the end to idle_timeout from then."""
        if info.end_at is None:
            return 0.0
        return max(0.0, (now - info.end_at).total_seconds() + self.idle_timeout)

    async def cleanup_idle(self, max_idle_seconds: float | None = None) -> builtins.list[str]:
        """Kill sandboxes not connected to for `max_idle_seconds` (default: `idle_timeout`, which the
        server enforces by itself anyway); returns their ids."""
        limit = self.idle_timeout if max_idle_seconds is None else max_idle_seconds
        now = datetime.now(timezone.utc)
        return await self._kill([i for i in await self.list() if self._idle_seconds(i, now) >= limit])

    async def health(self) -> builtins.list[dict[str, Any]]:
        """Every sandbox of the namespace: its key, whether it answers, its state and idle time
        (Alphora's `health_check_all`)."""
        now, report = datetime.now(timezone.utc), []
        for info in await self.list():
            alive = False
            with contextlib.suppress(E.SandlotError):
                probe = await AsyncSandbox.connect(info.sandbox_id, **self._conn) if info.state == "running" else None
                if probe is not None:
                    alive = await probe.is_running()
                    await probe.close()
            report.append({"sandbox_id": info.sandbox_id, "session_id": info.metadata.get(SESSION),
                           "user_id": info.metadata.get(USER), "type": info.metadata.get(TYPE), "state": info.state,
                           "alive": alive, "idle_seconds": round(self._idle_seconds(info, now))})
        return report

    health_check_all = health

    async def totals(self) -> dict[str, Any]:
        """Sandbox count and summed resource use of the namespace (Alphora's total usage)."""
        infos = await self.list()
        total = {"sandboxes": len(infos), "cpu_used_pct": 0.0, "mem_used": 0, "mem_total": 0, "disk_used": 0}
        for info in infos:
            with contextlib.suppress(E.SandlotError):
                samples = await AsyncSandbox.get_metrics(info.sandbox_id, **self._conn)
                if samples:
                    last = samples[-1]
                    total["cpu_used_pct"] += last.cpu_used_pct
                    total["mem_used"] += last.mem_used
                    total["mem_total"] += last.mem_total
                    total["disk_used"] += last.disk_used
        return total

    get_total_resource_usage = totals

    async def stop(self) -> None:
        """Close this object's connections. The sandboxes keep running (until released or idle), so a
        later service, in this process or another, finds them again."""
        for sandbox in self._open.values():
            await sandbox.close()
        self._open.clear()

    async def __aenter__(self) -> AsyncSandboxService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
