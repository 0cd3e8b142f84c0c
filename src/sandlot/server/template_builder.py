"""Running a template build: its base resolved to a stack, then each step in a sandbox of its own,
its files committed as a layer (the layers of snapshots and fork: layers/), cached by the stack
below it and the step (docs/templates.md).

A step runs in a sandbox made directly through the runtime (not listed, counted nowhere but the
host's admission), from the stack so far, with the step's user, working directory and env vars:
the build never runs anything on the host. RUN is `/bin/sh -c` (as Docker's), but
pip/apt/npm installs of the SDK's shapes are fetched on the host (template_packages.py); COPY extracts the
uploaded tarball in the sandbox's /tmp (a tmpfs: not committed) and copies what its source names
to its destination; WORKDIR makes its directory; ENV and USER only change the state the following
steps run with. A failing step (non-zero exit, a timeout) ends the build with its output in the
logs; the template's previous build stays what its name and tags give.

Bounds: MAX_BUILDS run at once on a server, shared fairly between teams (build_slots.py); a build's
base and steps, all together, run for at most SANDLOT_TEMPLATE_BUILD_TIMEOUT (its step's sandbox
killed past it, the build failed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import posixpath
import shlex
import time
from dataclasses import replace

from .. import _exceptions as E
from ..runtimes.policy import SandboxSpec
from ..templates.build_spec import BuildSpec, Step
from .agent_client import AgentClient
from .build_log import BUILD_LIMITS, MAX_LINE, BuildLog, State, StepFailed, build_sandbox
from .build_slots import BuildSlots
from .custom_templates import Build, CustomTemplate, CustomTemplates
from .service import SandboxService, new_sandbox_id
from .packages import PackageManager
from .template_bases import Bases
from .template_packages import Installer, recognise

log = logging.getLogger("sandlot.template_builds")

STEP_TIMEOUT_S = 3600
MAX_BUILDS = 2  # at once on this server (their sandboxes are counted in no team's quota); others wait
FAILURE_TAIL = 10  # output lines a failed step's error message repeats
FILES_IN_SANDBOX = "/tmp/.sandlot-build-files.tar"
COPY_SCRIPT = r"""
import glob, os, shutil, subprocess, sys, tempfile
tar, src, dest, owner, mode = sys.argv[1:6]
stage = tempfile.mkdtemp(dir="/tmp")
subprocess.run(["tar", "-C", stage, "--no-same-owner", "-xf", tar], check=True)
os.unlink(tar)
matches = sorted(glob.glob(os.path.join(stage, src.lstrip("/"))))
if not matches:
    sys.exit("COPY: nothing matches %r in the uploaded files" % src)
into_dir = dest.endswith("/") or len(matches) > 1 or os.path.isdir(dest)
whole_dir = len(matches) == 1 and os.path.isdir(matches[0]) and not os.path.islink(matches[0])
# a directory made for the copy is the owner's too (not its mode: that is the files')
made = [dest.rstrip("/") or "/"] if (into_dir or whole_dir) and not os.path.isdir(dest) else []
chown_only = set(made)
for m in matches:
    if os.path.isdir(m) and not os.path.islink(m):
        os.makedirs(dest, exist_ok=True)
        for entry in os.listdir(m):
            made.append(os.path.join(dest, entry))
        subprocess.run(["cp", "-a", m + "/.", dest], check=True)
        continue
    target = os.path.join(dest, os.path.basename(m)) if into_dir else dest
    os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
    subprocess.run(["cp", "-a", m, target], check=True)
    made.append(target)
for path in made:
    if owner:
        flags = [] if path in chown_only else ["-R"]
        subprocess.run(["chown", *flags, "--no-dereference", owner, path], check=True)
    if mode and path not in chown_only:
        subprocess.run(["chmod", "-R", mode, path], check=True)
shutil.rmtree(stage)
print("copied %d path(s) to %s" % (len(made), dest))
"""


class TemplateBuilder:
    def __init__(self, service: SandboxService, store: CustomTemplates, packages: PackageManager):
        self.service = service
        self.installer = Installer(packages, service.config.home / "cache")
        self.store = store
        self.layers = store.layers
        self.bases = Bases(service, store)
        self.running: dict[str, tuple[Build, asyncio.Task]] = {}
        self.slots = BuildSlots(MAX_BUILDS)
        self.timeout_s = service.config.template_build_timeout

    def live(self, build_id: str) -> Build | None:
        found = self.running.get(build_id)
        return found[0] if found else None

    def start(self, tpl: CustomTemplate, build: Build, spec: BuildSpec, raw: dict) -> None:
        build.spec = raw  # "waiting" until one of the server's MAX_BUILDS slots is free
        self.store.save_build(build)
        self.store.name_uploads(build, tpl.team, spec.uploads())  # its files stay while it does
        task = asyncio.create_task(self._queued(tpl, build, spec), name=f"template-build-{build.id}")
        self.running[build.id] = (build, task)
        task.add_done_callback(lambda _: self.running.pop(build.id, None))

    async def close(self) -> None:
        """At server stop: running builds end (their sandboxes killed), recorded as interrupted."""
        tasks = [task for _, task in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- one build ---------------------------------------------------------------------------

    async def _queued(self, tpl: CustomTemplate, build: Build, spec: BuildSpec) -> None:
        try:
            async with self.slots.slot(tpl.team):
                build.status = "building"
                self.store.save_build(build)
                await self._run(tpl, build, spec)
        except asyncio.CancelledError:
            if build.status == "waiting":  # stopped before it began
                build.status, build.finished_at = "error", time.time()
                build.reason = {"message": "the build was cancelled before it began", "step": "base"}
                self.store.save_build(build)
            raise

    async def _run(self, tpl: CustomTemplate, build: Build, spec: BuildSpec) -> None:
        out = BuildLog(build)
        holder = f"tplstep:{build.id}"  # every layer this build made or reused, until it ends
        started = time.monotonic()
        try:
            out.total = len(spec.steps)
            out.add(f"Building template {tpl.name} from {spec.base}")
            stack, state = await self._bounded(self._steps(tpl, spec, out, holder), out)
            out.step = "finalize"
            result = await asyncio.to_thread(self._finish, build, stack, state, spec, holder)
            if spec.start_cmd:
                out.add(f"Start command (run at each sandbox's start): {spec.start_cmd}")
            if spec.ready_cmd:
                out.add(f"Ready command (a create answers once it succeeds): {spec.ready_cmd}")
            build.result, build.status = result, "ready"
            self.store.tag(tpl.id, build.tags, build.id)
            for old in self.store.unused_builds(tpl.id):  # untagged now: their layers can go
                self.layers.release(f"tplbuild:{old}")
            out.add(f"Build finished in {time.monotonic() - started:.1f} s")
        except asyncio.CancelledError:
            build.status = "error"
            build.reason = {"message": "the build was interrupted: the server stopped", "step": out.step}
            raise
        except E.SandlotError as e:
            step = e.step if isinstance(e, StepFailed) else out.step
            out.add(e.message, "error")
            build.status = "error"
            build.reason = {"message": e.message, "step": step, "logEntries": build.logs[-20:]}
            # the steps that worked stay cached for the next attempt, as long as the template exists
            self.layers.hold(tpl.failed_holder, self.layers.held_by(holder))
        except Exception as e:  # a bug: the build fails with a clear status, and the log has the traceback
            log.exception("template build %s failed unexpectedly", build.id)
            build.status = "error"
            build.reason = {"message": f"internal error: {type(e).__name__}", "step": out.step}
        finally:
            build.finished_at = time.time()
            await asyncio.shield(asyncio.to_thread(self._end, build, holder))

    async def _bounded(self, work, out: BuildLog):
        """`work`, cancelled past SANDLOT_TEMPLATE_BUILD_TIMEOUT (its step's sandbox killed, as when
        the template is deleted): then the build fails saying so."""
        bound = asyncio.timeout(self.timeout_s)
        try:
            async with bound:
                return await work
        except TimeoutError:
            if not bound.expired():  # not ours
                raise
            raise StepFailed(f"the build passed its time limit of {self.timeout_s:g} s "
                             f"(SANDLOT_TEMPLATE_BUILD_TIMEOUT) at step {out.step}: stopped", out.step) from None

    async def _steps(self, tpl: CustomTemplate, spec: BuildSpec, out: BuildLog, holder: str) -> tuple[dict, State]:
        """The base and every step: the stack they make, and the state the last one left."""
        stack, base_id, state = await self.bases.resolve(spec, tpl.team, out, holder)
        self.layers.hold(holder, stack["layers"])
        key = _key(tpl.team, base_id, stack)
        force = spec.force
        for number, step in enumerate(spec.steps, 1):
            out.step = str(number)
            force = force or step.force
            stack, key = await self._step(step, stack, key, state, holder, force, out, tpl.team)
        return stack, state

    def _end(self, build: Build, holder: str) -> None:
        self.store.save_build(build)
        self.layers.release(holder)
        self.layers.gc()

    def _finish(self, build: Build, stack: dict, state: State, spec: BuildSpec, holder: str) -> dict:
        digests = self.layers.held_by(holder)
        layers = self.layers.stack(stack["layers"], build.holder)  # flattened if deep
        self.layers.hold(build.holder, digests)  # every step's layer stays a cache hit
        return {"template": stack["template"], "layers": layers, "envs": {**stack.get("envs", {}), **state.envs},
                "start_cmd": spec.start_cmd, "ready_cmd": spec.ready_cmd, "user": state.user,
                "workdir": state.workdir}

    async def _step(self, step: Step, stack: dict, key: str, state: State, holder: str, force: bool,
                    out: BuildLog, team: str) -> tuple[dict, str]:
        out.add(f"[{out.step}/{out.total}] {step.describe()}")
        if step.kind == "ENV":
            state.envs.update(dict(zip(step.args[::2], step.args[1::2])))
            return stack, key
        if step.kind == "USER":
            state.user = step.args[0]
            return stack, key
        if step.kind == "WORKDIR":
            state.workdir = step.args[0]
        step_key = _key(team, key, {"step": [step.kind, *step.args], "files": step.files_hash,
                                    "state": state.json()})
        cached = None if force else self.store.cached(step_key)
        if cached is not None:
            self.layers.hold(holder, cached["layers"])
            out.add("CACHED")
            return cached, step_key
        started = time.monotonic()
        top = await self._in_sandbox(step, stack, state, holder, out, team)
        new = {**stack, "layers": [*stack["layers"], *([top] if top else [])]}
        self.store.remember(step_key, new)
        out.add(f"done in {time.monotonic() - started:.1f} s" + ("" if top else " (no files changed)"))
        return new, step_key

    async def _in_sandbox(self, step: Step, stack: dict, state: State, holder: str, out: BuildLog,
                          team: str) -> str | None:
        """Run the step in a fresh sandbox on `stack`; the layer of what it changed (None: nothing)."""
        svc = self.service
        template = await svc.lifecycle.template_for(stack, stack["template"], wait=True)
        envs = {**stack.get("envs", {}), **state.envs}
        template = replace(template, envs=tuple(envs.items()))
        spec = SandboxSpec(new_sandbox_id(), "template-build", BUILD_LIMITS, envs=envs)
        rt = await build_sandbox(svc.runtime, spec, template)
        try:
            agent = AgentClient(str(rt.socket_path))
            if step.kind == "RUN":
                user = step.args[1] if len(step.args) > 1 and step.args[1] else state.user
                install = recognise(step.args[0])
                if install is not None:  # pip/apt/npm: fetched on the host, installed offline
                    await self.installer.run(install, rt.sandbox_id, agent, user, state.workdir, out,
                                             lambda argv, u, cwd: self._run_cmd(agent, argv, u, cwd, envs, out))
                else:
                    await self._run_cmd(agent, ["/bin/sh", "-c", step.args[0]], user, state.workdir, envs, out)
            elif step.kind == "WORKDIR":  # made for the current user, as BuildKit does
                d = shlex.quote(step.args[0])
                await self._run_cmd(agent, ["/bin/sh", "-c", f"[ -d {d} ] || {{ mkdir -p {d} && chown "
                                            f"{shlex.quote(state.user)} {d}; }}"], "root", "/", envs, out)
            elif step.kind == "COPY":
                await self._copy(agent, step, state, envs, out, team)
            # the sandbox's files as a layer: sandboxes are committed as snapshots are
            return await asyncio.to_thread(svc.lifecycle.commit_writable, rt.sandbox_id, holder, frozen=False)
        finally:
            await asyncio.shield(asyncio.to_thread(svc.runtime.kill, rt.sandbox_id))

    async def _copy(self, agent: AgentClient, step: Step, state: State, envs: dict, out: BuildLog,
                    team: str) -> None:
        team_files = self.store.files_path(team, step.files_hash)
        if not team_files.is_file():
            raise StepFailed(f"the files of COPY {step.args[0]} were not uploaded (hash {step.files_hash})", out.step)

        async def chunks():
            with open(team_files, "rb") as f:
                while data := await asyncio.to_thread(f.read, 1 << 20):
                    yield data

        await agent.write(FILES_IN_SANDBOX, "root", chunks())
        owner = step.args[2] if len(step.args) > 2 and step.args[2] else state.user
        mode = step.args[3] if len(step.args) > 3 else ""
        dest = posixpath.join(state.workdir, step.args[1])  # a relative one is the working directory's
        await self._run_cmd(agent, ["python3", "-c", COPY_SCRIPT, FILES_IN_SANDBOX, step.args[0], dest,
                                    owner, mode], "root", "/", envs, out)

    async def _run_cmd(self, agent: AgentClient, argv: list[str], user: str, cwd: str, envs: dict,
                       out: BuildLog) -> None:
        code, buffered, first = None, {"stdout": b"", "stderr": b""}, len(out.entries)
        events = agent.start(argv[0], argv[1:], envs=envs, cwd=cwd, user=user, timeout_ms=STEP_TIMEOUT_S * 1000)
        async for event in events:
            for stream in ("stdout", "stderr"):
                if stream in event:
                    data = buffered[stream] + event[stream]
                    *lines, rest = data.split(b"\n")
                    for line in lines:
                        out.add(line.decode(errors="replace"), "info" if stream == "stdout" else "warn")
                    # a line is shown up to MAX_LINE characters (at most 4 bytes each): more of one that
                    # never ends would grow without bound, and be copied again with every chunk
                    buffered[stream] = rest[:4 * MAX_LINE]
            if end := event.get("end"):
                code = end.get("exit_code")
                if end.get("error"):
                    out.add(str(end["error"]), "error")
        for stream, rest in buffered.items():
            if rest:
                out.add(rest.decode(errors="replace"), "info" if stream == "stdout" else "warn")
        if code != 0:
            shown = shlex.join(argv) if argv[0] != "python3" else "the copy"
            tail = [e["message"] for e in out.entries[first:]][-FAILURE_TAIL:]
            raise StepFailed(f"step {out.step} failed: {shown[:200]} exited with code {code}" +
                             "".join(f"\n  {line}" for line in tail), out.step)


def _key(team: str, parent: str, what) -> str:
    return hashlib.sha256(json.dumps([team, parent, what], sort_keys=True).encode()).hexdigest()
