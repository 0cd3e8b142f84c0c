"""Contexts run by a runner of sandlot's own instead of a Jupyter kernel: one process per context,
JSON lines on its stdin and stdout (the protocol is at the top of javascript.js), SIGINT to
interrupt a run. No Jupyter kernel for node or java installs without a network.

    javascript, typescript   javascript.js on the template's node
    java                     JavaRunner.java on the template's JDK: a JShell in the runner's JVM
"""

import asyncio
import json
import os
import shutil
import signal

import spawn
from context import KERNEL_START_TIMEOUT, Context
from execution import kernel_died, result_line
from failure import Failure
from languages import variables_code
from spawn import HERE

LINE_LIMIT = 1 << 24  # the runners cut their lines well below this; what is buffered is twice as much


class RunnerContext(Context):
    programs = ()  # the runner's interpreter: the first of these names found on PATH
    needs = ""  # what the template lacks if none is found

    def __init__(self, driver, language, cwd, envs, variables):
        super().__init__(driver, language, cwd, envs, variables)
        self.reader = None  # the task that reads the runner's lines
        self.calls = {}  # run id -> queue of its lines

    def argv(self, program):
        raise NotImplementedError

    def request(self, rid, code, silent, setup, envs):
        return {"id": rid, "code": code, "silent": silent}

    async def _start(self):
        await self.stop()
        program = next(filter(None, map(shutil.which, self.programs)), None)
        if program is None:
            raise Failure("invalid_argument", "%s contexts need %s, which this sandbox's template does not have"
                          % (self.language, self.needs))
        name = os.path.basename(program)
        self.calls = {}
        self.ids = iter(range(1, 1 << 62))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *spawn.die_with_driver(self.argv(program)), cwd=self.cwd, env=spawn.environment(self.envs), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, start_new_session=True, limit=LINE_LIMIT)
        except OSError as e:
            raise Failure("invalid_argument", "cannot start %s in %s: %s" % (name, self.cwd, e))
        spawn.raise_oom_score(self.proc.pid)
        ready = self.driver.loop.create_future()
        self.reader = asyncio.ensure_future(self._read(ready))
        try:
            await asyncio.wait_for(ready, KERNEL_START_TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure("internal", "%s did not start in %d s" % (name, KERNEL_START_TIMEOUT))
        if not ready.result():
            raise Failure("internal", "%s exited while starting (status %s)" % (name, self.proc.returncode))
        if self.variables:
            await self.run_silent(variables_code(self.language, self.variables))

    async def _read(self, ready):
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "ready" in msg and not ready.done():
                    ready.set_result(True)
                queue = self.calls.get(msg.get("id"))
                if queue is not None:
                    queue.put_nowait(msg)
        except (ValueError, OSError):  # a line over the limit, a broken pipe: the runner is unusable
            pass
        finally:  # the runner is gone (or being stopped): nobody waits for it any more
            if not ready.done():
                ready.set_result(False)
            self.interrupt(signal.SIGKILL)
            for queue in self.calls.values():
                queue.put_nowait(None)

    async def _call(self, code, silent, execution=None, setup=False):
        """Run code; return the runner's done line, or None if the runner died meanwhile."""
        rid = next(self.ids)
        queue = self.calls[rid] = asyncio.Queue()
        envs = execution.envs if execution is not None else {}
        try:
            self.proc.stdin.write(json.dumps(self.request(rid, code, silent, setup, envs)).encode() + b"\n")
            while True:
                msg = await queue.get()
                if msg is None or msg.get("type") == "done":
                    return msg
                if execution is not None:
                    msg.pop("id", None)
                    if msg.get("type") == "result":
                        msg = result_line({"text/plain": msg.get("text", "")}, True)
                    execution.emit(msg)
        finally:
            del self.calls[rid]

    async def run_silent(self, code):
        done = await self._call(code, True, setup=True)
        if done is None or done.get("error"):
            raise Failure("internal", "setting up the context failed: %s" % (done or {}).get("error", "the runner died"))

    async def run_execution(self, execution):
        proc = self.proc  # stop() (a restart, a remove) clears self.proc while we wait
        deadline = self.driver.loop.call_later(execution.timeout, self.interrupt) if execution.timeout else None
        try:
            if await self._call(execution.code, False, execution) is None:
                await proc.wait()
                execution.emit(kernel_died(proc.returncode, self.stopped_by))
        finally:
            if deadline is not None:
                deadline.cancel()

    async def stop(self):
        if self.reader is not None:
            self.reader.cancel()
            self.reader = None
        if self.proc is not None and self.proc.returncode is None:
            self.interrupt(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None


class NodeContext(RunnerContext):
    programs = ("node", "nodejs")
    needs = "Node.js"

    def argv(self, program):
        return [program, os.path.join(HERE, "javascript.js")]

    def request(self, rid, code, silent, setup, envs):
        # per-run env vars come as code (languages.ENV_CODE); setup code is javascript
        return dict(super().request(rid, code, silent, setup, envs), typescript=self.language == "typescript" and not setup)


class JavaContext(RunnerContext):
    programs = ("java",)
    needs = "a JDK (Debian's default-jdk-headless)"
    # The runner runs as a single source file (compiled in memory at each start). C1 only and the
    # serial GC: a JShell compiles every snippet with javac in this JVM, and on two loaded cores the
    # C2 compiler's work for that doubled the start (measured: ready in 3.3 s instead of 8-12 s).
    FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")

    def argv(self, program):
        return [program, *self.FLAGS, os.path.join(HERE, "JavaRunner.java")]

    def request(self, rid, code, silent, setup, envs):
        # per-run env vars: the runner sets them as system properties (a JVM's environment is
        # fixed), as E2B's java kernel does, and restores them after the run
        return dict(super().request(rid, code, silent, setup, envs), envs=envs)


RUNNERS = {"javascript": NodeContext, "typescript": NodeContext, "java": JavaContext}
