"""A code context, whatever runs it: its identity, the start and stop of its process (a kernel
started on first use, started afresh after it died), and its runs, one at a time, each with its
per-run environment variables set before and restored after it.

Subclasses say how their process starts, runs code and stops: JupyterContext (jupyter_context.py)
and the line-protocol runners (node_context.py).
"""

import asyncio
import os
import secrets
import signal

from failure import Failure
from languages import ENV_CODE, env_code

KERNEL_START_TIMEOUT = 60.0


class Context:
    def __init__(self, driver, language, cwd, envs, variables):
        self.driver = driver
        self.id = secrets.token_hex(16)
        self.language, self.cwd, self.envs, self.variables = language, cwd, envs, variables
        self.lock = asyncio.Lock()
        self.proc = None
        self.started = None  # a future: the kernel is up (or failed to come up)
        self.current = None  # the Execution running now
        self.stopped_by = None  # "restarted" / "removed" while a restart or remove stops the kernel

    def describe(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    # ---- the process: subclasses start, run and stop it ----------------------------------------

    async def _start(self):
        """Start the process (stopping what is left of an earlier one) and set up the context."""
        raise NotImplementedError

    async def run_silent(self, code):
        """Run setup code without output; raise Failure if it fails or the process dies meanwhile."""
        raise NotImplementedError

    async def run_execution(self, execution):
        """Run the user's code, sending its output through `execution`."""
        raise NotImplementedError

    async def stop(self):
        """Kill the process (if it runs) and wait for it."""
        raise NotImplementedError

    # ---- lifecycle -------------------------------------------------------------------------------

    def ensure_started(self):
        started = self.started
        if started is None or (started.done() and (started.cancelled() or started.exception() or self.dead())):
            self.started = asyncio.ensure_future(self._start())
        return self.started

    async def wait_started(self):
        """The kernel up. A start that a restart or remove cancelled fails this request (with a
        reply), not the driver's task for it."""
        started = self.ensure_started()
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            if started.cancelled():
                raise Failure("internal", "the context was %s while its kernel started" % (self.stopped_by or "stopped"))
            raise

    async def halt(self, why):
        """Stop the kernel for a restart or remove. A start in progress is cancelled first: it
        would otherwise spawn a kernel after stop() and leave it running."""
        self.stopped_by = why
        started = self.started
        if started is not None and not started.done():
            started.cancel()
            await asyncio.wait((started,))
        await self.stop()

    def dead(self):
        return self.proc is None or self.proc.returncode is not None

    def interrupt(self, sig=signal.SIGINT):
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    # ---- running code ----------------------------------------------------------------------------

    async def execute(self, execution):
        async with self.lock:
            if execution.cancelled:
                return
            if self.driver.contexts.get(self.id) is not self:
                raise Failure("not_found", "context %s was removed" % self.id)
            await self.wait_started()
            envs = execution.envs if self.language in ENV_CODE else None
            if envs:
                await self.run_silent(env_code(self.language, envs, restore=False))
            try:
                # only the run itself is `current`, the one a cancel interrupts: an interrupt
                # landing in the env set-up or restore would leave the run's env vars in place
                if not execution.cancelled:
                    self.current = execution
                    try:
                        await self.run_execution(execution)
                    finally:
                        self.current = None
            finally:
                if envs and not self.dead():
                    await self.run_silent(env_code(self.language, envs, restore=True))
