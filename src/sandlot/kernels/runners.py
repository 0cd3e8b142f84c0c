"""A javascript or typescript context: kernels/javascript.js on the template's node, JSON lines
on its stdin and stdout (no Jupyter kernel for node installs without a network)."""

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

NODE_RUNNER = os.path.join(HERE, "javascript.js")
NODE_LINE_LIMIT = 1 << 24  # javascript.js cuts its lines well below this; what it buffers is twice as much


class NodeContext(Context):
    def __init__(self, driver, language, cwd, envs, variables):
        super().__init__(driver, language, cwd, envs, variables)
        self.reader = None  # the task that reads the runner's lines
        self.calls = {}  # run id -> queue of its lines

    async def _start(self):
        await self.stop()
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise Failure("invalid_argument", "%s contexts need Node.js, which this sandbox's template "
                          "does not have" % self.language)
        env = dict(os.environ, **self.envs)
        self.calls = {}
        self.ids = iter(range(1, 1 << 62))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                node, NODE_RUNNER, cwd=self.cwd, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, start_new_session=True, limit=NODE_LINE_LIMIT)
        except OSError as e:
            raise Failure("invalid_argument", "cannot start node in %s: %s" % (self.cwd, e))
        spawn.raise_oom_score(self.proc.pid)
        ready = self.driver.loop.create_future()
        self.reader = asyncio.ensure_future(self._read(ready))
        try:
            await asyncio.wait_for(ready, KERNEL_START_TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure("internal", "node did not start in %d s" % KERNEL_START_TIMEOUT)
        if not ready.result():
            raise Failure("internal", "node exited while starting (status %s)" % self.proc.returncode)
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
        finally:  # node is gone (or being stopped): nobody waits for it any more
            if not ready.done():
                ready.set_result(False)
            self.interrupt(signal.SIGKILL)
            for queue in self.calls.values():
                queue.put_nowait(None)

    async def _call(self, code, silent, execution=None, typescript=None):
        """Run code; return the runner's done line, or None if node died meanwhile."""
        rid = next(self.ids)
        queue = self.calls[rid] = asyncio.Queue()
        if typescript is None:
            typescript = self.language == "typescript"
        try:
            self.proc.stdin.write(json.dumps({"id": rid, "code": code, "silent": silent,
                                              "typescript": typescript}).encode() + b"\n")
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
        done = await self._call(code, True, typescript=False)
        if done is None or done.get("error"):
            raise Failure("internal", "setting up the context failed: %s" % (done or {}).get("error", "node died"))

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
