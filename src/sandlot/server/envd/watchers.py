"""Polling watchers (CreateWatcher / GetWatcherEvents / RemoveWatcher), kept per sandbox.

The sync SDK cannot hold a stream open, so each watcher is an agent watch stream pumped into a
buffer here until the client removes it or the agent ends the stream (the sandbox was killed). A
pause only stalls the stream, so watchers outlive pause and resume as envd's do. Events are the
agent's raw event objects ({"name", "type", "entry"?}); filesystem.py converts them when fetched.
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
from collections import deque
from collections.abc import AsyncIterator

from ..._exceptions import NotFound, ResourceExhausted, SandlotError
from .routing import SandboxHandle

MAX_BUFFERED = 10_000  # per watcher; a client that never polls loses the oldest events
# per sandbox: each watcher holds an agent connection, an inotify instance inside and up to
# MAX_BUFFERED events here, so a sandbox's clients must not open them without end
MAX_WATCHERS = 64
RECENT = 256  # names remembered for settle()
SETTLE_TIMEOUT_S = 1.0


class Watcher:
    def __init__(self, path: str, recursive: bool, stream: AsyncIterator[dict]):
        self.path, self.recursive = path, recursive  # the absolute watched directory
        self.events: deque[dict] = deque(maxlen=MAX_BUFFERED)
        self.count = 0  # events received so far
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT)  # (count, name)
        self._arrival = asyncio.Event()  # replaced on every event: waiters wake
        self._stream = stream
        self.task: asyncio.Task | None = None

    def name_of(self, path: str) -> str | None:
        """The event name `path` gets in this watcher, or None if it is not watched."""
        if not path.startswith(self.path.rstrip("/") + "/"):
            return None
        name = posixpath.relpath(path, self.path)
        return name if self.recursive or "/" not in name else None

    async def pump(self) -> None:
        try:
            async for message in self._stream:
                if event := message.get("event"):
                    self.events.append(event)
                    self.count += 1
                    self._recent.append((self.count, event.get("name", "")))
                    self._arrival.set()
                    self._arrival = asyncio.Event()
        except SandlotError:
            pass  # the agent went away with its sandbox

    async def wait_for(self, name: str, after: int) -> None:
        """Until an event named `name` arrives as event number `after` + 1 or later."""
        while not any(n > after and seen == name for n, seen in self._recent):
            await self._arrival.wait()


class Watchers:
    def __init__(self) -> None:
        self._by_sandbox: dict[str, dict[str, Watcher]] = {}

    def add(self, sandbox: SandboxHandle, watcher: Watcher) -> str:
        """Register a watcher whose stream has started; it lives until removed or its stream ends.
        Past MAX_WATCHERS for the sandbox it is refused (the caller closes its stream)."""
        if len(self._by_sandbox.get(sandbox.id, {})) >= MAX_WATCHERS:
            raise ResourceExhausted(f"too many watchers: a sandbox may have at most {MAX_WATCHERS}; "
                                    "remove one first")
        watcher_id = secrets.token_hex(8)
        self._by_sandbox.setdefault(sandbox.id, {})[watcher_id] = watcher
        watcher.task = asyncio.create_task(watcher.pump())
        watcher.task.add_done_callback(lambda _: self._forget(sandbox.id, watcher_id))
        return watcher_id

    def take_events(self, sandbox: SandboxHandle, watcher_id: str) -> list[dict]:
        events = self._get(sandbox, watcher_id).events
        taken = list(events)
        events.clear()
        return taken

    def remove(self, sandbox: SandboxHandle, watcher_id: str) -> None:
        watcher = self._get(sandbox, watcher_id)
        self._forget(sandbox.id, watcher_id)
        if watcher.task is not None:
            watcher.task.cancel()

    def marks(self, sandbox: SandboxHandle) -> dict[Watcher, int]:
        """Where each of the sandbox's watchers stands; take before a change, pass to settle()."""
        return {w: w.count for w in self._by_sandbox.get(sandbox.id, {}).values()}

    async def settle(self, marks: dict[Watcher, int], path: str) -> None:
        """Wait (briefly) until every watcher covering `path` has recorded an event for it.

        Clients poll right after an upload returns and expect its events (docs/e2b.md §3.7), while inotify
        events reach the agent's watch streams asynchronously.
        """
        waits = [w.wait_for(name, mark) for w, mark in marks.items() if (name := w.name_of(path)) is not None]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), SETTLE_TIMEOUT_S)
            except TimeoutError:
                pass

    def _get(self, sandbox: SandboxHandle, watcher_id: str) -> Watcher:
        watcher = self._by_sandbox.get(sandbox.id, {}).get(watcher_id)
        if watcher is None:
            raise NotFound(f"watcher '{watcher_id}' not found")
        return watcher

    def _forget(self, sandbox_id: str, watcher_id: str) -> None:
        mine = self._by_sandbox.get(sandbox_id)
        if mine is not None:
            mine.pop(watcher_id, None)
            if not mine:
                del self._by_sandbox[sandbox_id]
