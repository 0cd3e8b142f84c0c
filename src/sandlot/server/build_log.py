"""A template build's running state: its log (E2B's BuildLogEntry), what each step runs with, how a
step fails, and its sandboxes (their limits, how one is made). Shared by the builder
(template_builder.py) and what it calls: bases (template_bases.py, image_archive.py) and package
installs (template_packages.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .. import _exceptions as E
from ..runtimes.policy import Limits
from ..templates.build_spec import DEFAULT_USER, DEFAULT_WORKDIR
from .custom_templates import Build

BUILD_LIMITS = Limits(memory_mb=2048, cpu_count=2.0, pids=4096)
MAX_LOG_ENTRIES = 20_000  # per build; older output lines are dropped first
MAX_LINE = 4000
# Per build, its entries' characters (each counted ENTRY_CHARS more for its timestamp, level and
# step); older ones are dropped first. The log is stored whole and a status answer of a finished build
# reads it whole: at 20,000 lines of 4000 characters (80 MB) that took 0.17 s of the event loop each.
MAX_LOG_CHARS = 4 << 20
ENTRY_CHARS = 100


class StepFailed(E.SandlotError):
    """A build step failed; `step` is E2B's step name (its number, "base" or "finalize")."""

    status = 400

    def __init__(self, message: str, step: str):
        super().__init__(message)
        self.step = step


@dataclass
class State:
    """What a step runs with."""

    user: str = DEFAULT_USER
    workdir: str = DEFAULT_WORKDIR
    envs: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict:
        return {"user": self.user, "workdir": self.workdir, "envs": self.envs}


class BuildLog:
    """A build's log entries (E2B's BuildLogEntry), kept in memory while it runs."""

    def __init__(self, build: Build):
        self.entries = build.logs
        self.step = "base"
        self.total = 0  # steps in the recipe
        self.chars = sum(len(e["message"]) + ENTRY_CHARS for e in self.entries)

    def add(self, message: str, level: str = "info") -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for line in (message.splitlines() or [""]):
            self.entries.append({"timestamp": now, "level": level, "message": line[:MAX_LINE], "step": self.step})
            self.chars += len(line[:MAX_LINE]) + ENTRY_CHARS
        dropped = 0
        while len(self.entries) - dropped > MAX_LOG_ENTRIES or self.chars > MAX_LOG_CHARS:
            self.chars -= len(self.entries[dropped]["message"]) + ENTRY_CHARS
            dropped += 1
        del self.entries[:dropped]


async def build_sandbox(runtime, spec, template):
    """runtime.create(spec, template) in a thread. A build cancelled meanwhile (its template deleted,
    the server stopping) kills the sandbox once made: the thread cannot be stopped, and what it makes
    would run on, tracked by nobody, past the server's stop."""
    making = asyncio.ensure_future(asyncio.to_thread(runtime.create, spec, template))
    try:
        return await asyncio.shield(making)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # (one that failed to be made left nothing)
            rt = await making
            await asyncio.to_thread(runtime.kill, rt.sandbox_id)
        raise
