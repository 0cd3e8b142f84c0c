"""Sandboxes made from a template built from a recipe (template_builder.py): what a create by name
or name:tag gets, and its start command.

E2B runs a template's start command during the build and snapshots the sandbox with its memory,
so each sandbox resumes with the process running. This tier cannot snapshot memory (docs/
snapshots.md): the start command is started in each new sandbox (as the template's final user, in
its working directory), and the create answers once the ready command succeeds (every 0.2 s, for
at most READY_TIMEOUT_S; past that the sandbox is killed and the create fails, saying so). A ready
command that only sleeps (E2B's `wait_for_timeout`) is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

from .. import _exceptions as E
from ..runtimes.policy import Limits
from ..templates.spec import Template
from .custom_templates import CustomTemplates, split_ref
from .lifecycle import Lifecycle
from .live import CreateRequest, LiveSandbox
from .service import SandboxService
from .template_bases import SCRATCH_RECIPE

log = logging.getLogger("sandlot.template_builds")

READY_TIMEOUT_S = 120
READY_POLL_S = 0.2
# E2B's wait_for_timeout() (what its Dockerfile parser gives a CMD): a pause before E2B's memory
# snapshot, once per build. Here it would delay every create, and proves nothing: skipped.
SLEEP_ONLY = re.compile(r"^\s*sleep\s+[0-9.]+\s*$")


@dataclass
class FromTemplate:
    name: str  # shown as the sandbox's templateID: "name" or "name:tag"
    template: Template
    result: dict
    limits: Limits | None  # the template's cpuCount/memoryMB, for creates that set none


async def for_create(store: CustomTemplates, lifecycle: Lifecycle, ref: str, team: str) -> FromTemplate | None:
    """The team's built template a create's templateID names, if any (NotFound for a missing tag)."""
    if ref == SCRATCH_RECIPE:
        raise E.InvalidArgument("\"scratch\" is the empty root under templates built from image archives: "
                                "sandboxes cannot start from it (it has no python3 for the agent)")
    found = await asyncio.to_thread(store.resolve, ref, team) if store.find(ref, team) else None
    if found is None:
        return None
    tpl, build = found
    result = build.result or {}
    template = await lifecycle.template_for(result, result["template"])
    limits = None
    if build.limits:
        limits = Limits(memory_mb=build.limits.get("memoryMB", Limits.memory_mb),
                        cpu_count=float(build.limits.get("cpuCount", Limits.cpu_count)))
    name, tag = split_ref(ref)
    return FromTemplate(tpl.name if tag == "default" else f"{tpl.name}:{tag}", template, result, limits)


async def create(svc: SandboxService, req: CreateRequest, built: FromTemplate) -> LiveSandbox:
    """A sandbox from the template, its start command started and ready (else it is killed)."""
    live = await svc.create(req)
    if built.result.get("start_cmd") or built.result.get("ready_cmd"):
        try:
            await start_services(live.agent, built.result)
        except BaseException:
            await asyncio.shield(svc.kill(live.id, reason="its template's start command failed"))
            raise
    return live


async def start_services(agent, result: dict) -> None:
    """Start the template's start command and wait for its ready command (TemplateError if it
    never succeeds)."""
    user, cwd = result.get("user") or "user", result.get("workdir") or None
    if start := result.get("start_cmd"):
        events = agent.start("/bin/sh", ["-c", start], user=user, cwd=cwd, tag="start_cmd")
        try:
            async for event in events:
                if "start" in event or "end" in event:
                    break
        finally:
            await events.aclose()  # it runs on: the agent keeps processes whose client left
    ready = result.get("ready_cmd")
    if not ready or SLEEP_ONLY.match(ready):
        return
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        code = None
        async for event in agent.start("/bin/sh", ["-c", ready], user=user, cwd=cwd, timeout_ms=30_000):
            if end := event.get("end"):
                code = end.get("exit_code")
        if code == 0:
            return
        if time.monotonic() > deadline:
            raise E.TemplateError(f"the template's ready command did not succeed within {READY_TIMEOUT_S} s: "
                                  f"{ready[:200]}")
        await asyncio.sleep(READY_POLL_S)
