"""Each sandbox's log: what happened to it (lifecycle) and the processes started in it.

Served by logs_api.py in E2B's shapes (`GET /sandboxes/{id}/logs`, `/v2/sandboxes/{id}/logs`).
Entries are written by the control plane only, never by the sandbox, so a sandbox cannot forge
or flood its own log. Loggers:

    lifecycle   created, timeout set, paused, resumed, ended (why: killed, timeout, sandbox exited,
                server shutdown), adopted after a restart
    process     a process the control plane started (commands through envd, package installs:
                pid, command line, user, cwd), and how it ended
                (exit code, or the signal), seen when its event stream is followed to the end: a
                client that lets go of a background command leaves its end unrecorded

Kept in memory: the newest KEPT_PER_SANDBOX entries of each sandbox, and a sandbox's log for
ENDED_KEPT_FOR seconds after it ended (at most the ENDED_KEPT last ended); a server restart starts
afresh (an adopted sandbox's log opens with "adopted").
"""

from __future__ import annotations

import shlex
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .agent_client import Readable

LEVELS = ("debug", "info", "warn", "error")  # E2B's LogLevel, least severe first
# An entry is ~0.5 KiB: a sandbox's log stays under ~0.5 MiB (an idle sandbox costs ~5.5 MiB), and
# the ended ones kept under ~100 MiB however busy the server.
KEPT_PER_SANDBOX = 1000
ENDED_KEPT = 200
ENDED_KEPT_FOR = 3600.0


@dataclass(frozen=True, slots=True)
class Entry:
    timestamp: float  # unix seconds
    level: str
    logger: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)


def _text(value: object) -> str:
    """E2B's log fields are strings; booleans as JSON writes them."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class Journal:
    """The logs of the sandboxes this server runs and of those that ended lately."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._logs: dict[str, deque[Entry]] = {}
        self._ended: OrderedDict[str, float] = OrderedDict()  # sandbox id -> when it ended, oldest first

    def record(self, sandbox_id: str, message: str, *, logger: str = "lifecycle", level: str = "info",
               **fields: object) -> None:
        entries = self._logs.setdefault(sandbox_id, deque(maxlen=KEPT_PER_SANDBOX))
        entries.append(Entry(self._clock(), level, logger, message,
                             {k: _text(v) for k, v in fields.items() if v is not None}))

    def ended(self, sandbox_id: str) -> None:
        """The sandbox is gone: its log stays readable for a while."""
        now = self._clock()
        self._ended[sandbox_id] = now
        self._ended.move_to_end(sandbox_id)
        while self._ended:
            oldest, when = next(iter(self._ended.items()))
            if len(self._ended) <= ENDED_KEPT and when > now - ENDED_KEPT_FOR:
                break
            del self._ended[oldest]
            self._logs.pop(oldest, None)

    def entries(self, sandbox_id: str) -> list[Entry] | None:
        """Oldest first; None if this server knows nothing of the sandbox (any more)."""
        if sandbox_id in self._ended and self._ended[sandbox_id] <= self._clock() - ENDED_KEPT_FOR:
            return None
        found = self._logs.get(sandbox_id)
        return list(found) if found is not None else None

    def recording(self, sandbox_id: str, agent):
        """`agent` (the sandbox's AgentClient), noting the processes started through it."""
        return RecordingAgent(agent, self, sandbox_id)


class RecordingAgent:
    """An AgentClient whose `start()` notes each process's start and end in the journal; every
    other call goes straight to the client."""

    def __init__(self, agent, journal: Journal, sandbox_id: str):
        self._agent = agent
        self._journal = journal
        self._sandbox_id = sandbox_id

    def __getattr__(self, name: str):
        return getattr(self._agent, name)

    def start(self, cmd: str, args=(), **options) -> Recorded:
        return Recorded(self._agent.start(cmd, args, **options), self._journal, self._sandbox_id,
                        shlex.join([cmd, *args]), options)


class Recorded(Readable):
    """A process's events (an AgentStream), its start and end noted in the journal as they pass.
    Its `read()` loses nothing when cancelled, as the stream's (agent_client.py)."""

    def __init__(self, events, journal: Journal, sandbox_id: str, line: str, options: dict):
        self._events, self._journal, self._sandbox_id = events, journal, sandbox_id
        self._line, self._options = line, options
        self._pid = None

    async def read(self) -> dict:
        event = await self._events.read()
        if "start" in event:
            self._pid = pid = event["start"].get("pid")
            self._journal.record(self._sandbox_id, f"process {pid} started: {self._line[:1000]}", logger="process",
                                 pid=pid, user=self._options.get("user"), cwd=self._options.get("cwd"),
                                 pty=True if self._options.get("pty") else None)
        elif "end" in event:
            end = event["end"]
            how = f"exited with code {end.get('exit_code')}" if end.get("exited") else end.get("status")
            self._journal.record(self._sandbox_id, f"process {self._pid} {how}", logger="process", pid=self._pid,
                                 exit_code=end.get("exit_code"), status=end.get("status"))
        return event

    async def aclose(self) -> None:
        await self._events.aclose()
