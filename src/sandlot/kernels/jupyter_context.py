"""A context run by a Jupyter kernel (python, bash, r): started by spawn.py, driven over its shell
and iopub sockets (kernel_link.py), its iopub messages routed by the driver to the Execution they
belong to."""

import asyncio
import os
import secrets
import signal

import spawn
from context import KERNEL_START_TIMEOUT, Context
from execution import kernel_died
from failure import Failure
from kernel_link import Child, KernelLink
from languages import variables_code


class JupyterContext(Context):
    def __init__(self, driver, language, cwd, envs, variables):
        super().__init__(driver, language, cwd, envs, variables)
        self.client = None
        self.iopub_seen = None  # while starting: set by the kernel's next iopub message
        self.files = []  # the kernel's connection file and ipc sockets
        self.count = 0  # the kernel's execution count after its last run (a new kernel starts at 0)

    # ---- kernel lifecycle ----------------------------------------------------------------------

    async def _start(self):
        await self.stop()
        started = self.driver.take_early(self)
        if started is None:
            try:
                started = spawn.spawn_kernel(self.driver.run_dir, secrets.token_hex(16), self.language, self.cwd,
                                             self.envs)
            except FileNotFoundError as e:
                if e.filename == self.cwd:
                    raise Failure("invalid_argument", "cannot start the %s kernel in %s: %s" % (self.language, self.cwd, e))
                raise Failure("invalid_argument", "%s contexts need %s, which this sandbox's template does not have"
                              % (self.language, e.filename))
            except OSError as e:
                raise Failure("invalid_argument", "cannot start the %s kernel in %s: %s" % (self.language, self.cwd, e))
        popen, info, conn, sockets = started
        self.proc = Child(popen)
        self.count = 0
        self.files = [conn, *sockets.values()]
        # imported once the kernel is on its way: the imports overlap its start
        self.client = KernelLink(info, sockets, self.driver.on_shell, self._on_iopub)
        ready = asyncio.ensure_future(self._wait_ready())
        died = asyncio.ensure_future(self.proc.wait())
        try:
            await asyncio.wait((ready, died), timeout=KERNEL_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            died.cancel()
        if not ready.done() or ready.cancelled():
            if died.done() and not died.cancelled():
                raise Failure("internal", "the %s kernel exited while starting (status %s)" % (
                    self.language, self.proc.returncode))
            raise Failure("internal", "the %s kernel did not start in %d s" % (self.language, KERNEL_START_TIMEOUT))
        if self.variables:
            await self.run_silent(variables_code(self.language, self.variables))

    async def _wait_ready(self):
        """Ask for kernel_info until it answers and its iopub messages reach us (a SUB socket
        misses what is published before it is connected)."""
        while True:
            self.iopub_seen = self.driver.loop.create_future()
            try:
                await asyncio.wait_for(self._expect_reply(self.client.send("kernel_info_request", {})), 0.5)
                await asyncio.wait_for(self.iopub_seen, 0.25)
                return
            except asyncio.TimeoutError:
                continue

    def _on_iopub(self, msg):
        if self.iopub_seen is not None and not self.iopub_seen.done():
            self.iopub_seen.set_result(None)
        self.driver.on_iopub(msg)

    async def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        self.proc = None
        files, self.files = self.files, []
        for path in files:  # a killed kernel leaves its ipc sockets behind
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # ---- running code --------------------------------------------------------------------------

    async def run_silent(self, code):
        """Run setup code without output or a history entry; raise if it fails or the kernel dies
        meanwhile (a run may have left it to die there: os.environ patched to exit)."""
        proc = self.proc
        reply = self._expect_reply(self.client.execute(code, silent=True))
        try:
            replied = await self._unless_died(proc, reply)
        finally:
            reply.cancel()
        if not replied:
            raise Failure("internal", "setting up the context failed: %s" % kernel_died(
                proc.returncode, self.stopped_by)["value"])
        if reply.result()["content"].get("status") != "ok":
            raise Failure("internal", "setting up the context failed: %s" % reply.result()["content"].get("evalue"))

    @staticmethod
    async def _unless_died(proc, *futures):
        """Wait for all of `futures`; False if the kernel process ends first."""
        died = asyncio.ensure_future(proc.wait())
        waiting = set(futures)
        try:
            while waiting and not died.done():
                done, _ = await asyncio.wait(waiting | {died}, return_when=asyncio.FIRST_COMPLETED)
                waiting -= done
        finally:
            died.cancel()
        return not waiting

    def _expect_reply(self, msg_id):
        """A future of the shell reply to msg_id, registered before the loop can read it."""
        waiter = self.driver.loop.create_future()
        self.driver.replies[msg_id] = waiter
        waiter.add_done_callback(lambda _: self.driver.replies.pop(msg_id, None))
        return waiter

    async def run_execution(self, execution):
        proc = self.proc  # stop() (a restart, a remove) clears self.proc while we wait
        execution.msg_id = self.client.execute(execution.code, silent=False)
        self.driver.executions[execution.msg_id] = execution
        # Python kernels send no execute_input (startup.py): the count is known ahead, the next one
        execution.announce(self.count + 1)
        reply = self._expect_reply(execution.msg_id)
        execution.idle = idle = self.driver.loop.create_future()
        deadline = self.driver.loop.call_later(execution.timeout, self.interrupt) if execution.timeout else None
        try:
            if not await self._unless_died(proc, reply, idle):
                execution.emit(kernel_died(proc.returncode, self.stopped_by))
                return
            content = reply.result()["content"]
            count = content.get("execution_count")
            if isinstance(count, int) and not isinstance(count, bool):
                execution.announce(count)  # differs only if the code changed the kernel's count
                self.count = count
            if content.get("status") == "error" and not execution.error_seen:
                execution.emit({"type": "error", "name": content.get("ename", ""),
                                "value": content.get("evalue", ""),
                                "traceback": "\n".join(content.get("traceback", []))})
        finally:
            if deadline is not None:
                deadline.cancel()
            reply.cancel()
            self.driver.executions.pop(execution.msg_id, None)
