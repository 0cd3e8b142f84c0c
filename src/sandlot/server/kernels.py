"""Code contexts of one sandbox: the control plane's side of the in-sandbox driver (kernels/driver.py).

The driver is an ordinary process started through the agent, as the sandbox's default user; this
side writes requests to its stdin and reads JSON lines from its stdout, routing each to the request
it answers. Everything it prints is untrusted: lines are size-bounded and parsed as JSON objects,
and a driver that breaks the protocol is killed (the next request starts a fresh one).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from .. import _exceptions as E
from ..agent.client import AgentClient, AgentError

log = logging.getLogger("sandlot.kernels")

DRIVER = "/opt/sandlot/sandlot_agent/kernels/driver.py"
READY_TIMEOUT = 120.0  # a cold kernel takes ~0.6 s; a loaded machine may take far longer
MAX_LINE_MARGIN = 1 << 20  # a line may exceed the driver's output cap by its JSON framing only
STOPPED = "the code interpreter stopped"


def request_bound(max_output: int) -> int:
    """What one request may receive in all. The driver bounds a run's output to max_output as it
    counts it (spaced JSON); its compact lines and their framing stay well under twice that. Code in
    the sandbox can write to the driver's stdout too, so the bound is kept here, not trusted to it."""
    return 2 * max_output + MAX_LINE_MARGIN


class KernelSession:
    def __init__(self, agent: AgentClient, user: str, max_output: int):
        self.agent, self.user, self.max_output = agent, user, max_output
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Queue] = {}
        self._received: dict[int, int] = {}  # request id -> bytes routed to it so far
        self._started: asyncio.Future | None = None
        self._input: asyncio.Queue[bytes | None] | None = None
        self._tasks: list[asyncio.Task] = []
        self._pid: int | None = None

    # ---- the driver process ------------------------------------------------------------------

    def start(self) -> asyncio.Future:
        """Start the driver unless it runs; the future resolves once its default python context is
        ready. Safe to call again: a driver that stopped is replaced."""
        if self._started is None or (self._started.done() and self._stopped()):
            self._started = asyncio.ensure_future(self._start())
        return self._started

    def _stopped(self) -> bool:
        return self._started.exception() is not None or not self._tasks or self._tasks[0].done()

    async def _start(self) -> None:
        await self.close()
        await self._kill_orphans()
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self._input = asyncio.Queue()
        events = self.agent.start("python3", ["-B", DRIVER, "--max-output", str(self.max_output)],
                                  user=self.user, stdin=True, internal=True)
        self._tasks = [asyncio.create_task(self._read(events, ready), name="sandlot-kernels-read")]
        try:
            await asyncio.wait_for(asyncio.shield(ready), READY_TIMEOUT)
        except asyncio.TimeoutError:
            await self.close()
            raise E.TimeoutError("the code interpreter did not start in time") from None
        self._tasks.append(asyncio.create_task(self._write(), name="sandlot-kernels-write"))

    async def _read(self, events: AsyncIterator[dict], ready: asyncio.Future) -> None:
        buf = bytearray()
        try:
            async for event in events:
                if "start" in event:
                    self._pid = event["start"]["pid"]
                elif "stdout" in event:
                    buf += event["stdout"]
                    breach = None
                    while breach is None and (cut := buf.find(b"\n")) >= 0:
                        line, buf = bytes(buf[:cut]), buf[cut + 1:]
                        breach = self._dispatch(line, ready)
                    if breach is None and len(buf) > self.max_output + MAX_LINE_MARGIN:
                        breach = "a line over its output limit"
                    if breach is not None:
                        log.warning("a code interpreter sent %s: stopping it", breach)
                        await self._kill()
                        break
                elif "stderr" in event:
                    log.debug("kernel driver: %s", event["stderr"][:2000].decode(errors="replace").rstrip())
                elif "end" in event:
                    break
        except AgentError as e:
            log.debug("kernel driver stream ended: %s", e)
        finally:
            if not ready.done():
                ready.set_exception(E.RuntimeFailure(f"{STOPPED} while starting"))
            for queue in self._waiting.values():
                queue.put_nowait({"error": {"code": "internal", "message": STOPPED}})
            self._waiting.clear()
            self._received.clear()

    def _dispatch(self, line: bytes, ready: asyncio.Future) -> str | None:
        """Route one line; returns what was wrong with it if the driver must be stopped."""
        try:
            msg = json.loads(line)
        except ValueError:
            return None
        if not isinstance(msg, dict):
            return None
        if "ready" in msg and not ready.done():
            if msg["ready"] is None:
                ready.set_exception(E.RuntimeFailure(f"the code interpreter failed to start: {msg.get('error')}"))
            else:
                ready.set_result(msg["ready"])
            return None
        rid = msg.get("id")
        queue = self._waiting.get(rid)
        if queue is not None:
            received = self._received[rid] = self._received.get(rid, 0) + len(line)
            if received > request_bound(self.max_output):
                return "more output for one request than its limit allows"
            queue.put_nowait(msg)
        return None

    async def _write(self) -> None:
        async def chunks():
            while (chunk := await self._input.get()) is not None:
                yield chunk

        try:
            await self.agent.stream_input(chunks(), pid=self._pid)
        except AgentError as e:
            log.debug("kernel driver input ended: %s", e)

    async def _kill_orphans(self) -> None:
        """Drivers this session no longer talks to (a server restart adopted the sandbox; a protocol
        breach): their kernels would hold memory for contexts nobody can reach."""
        for proc in await self.agent.list_processes(all=True):
            if DRIVER in proc.get("args", []):
                try:
                    await self.agent.send_signal(signal.SIGKILL, pid=proc["pid"])
                except AgentError:
                    pass

    async def _kill(self) -> None:
        if self._pid is not None:
            try:
                await self.agent.send_signal(signal.SIGKILL, pid=self._pid)
            except AgentError:
                pass

    async def close(self) -> None:
        """Stop talking to the driver (the sandbox's end kills it; so does a protocol breach)."""
        if self._input is not None:
            self._input.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # ---- requests ----------------------------------------------------------------------------

    async def _send(self, op: str, args: dict) -> tuple[int, asyncio.Queue]:
        await self.start()
        rid = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        self._waiting[rid] = queue
        self._received[rid] = 0
        self._input.put_nowait(json.dumps({"id": rid, "op": op, **args}).encode() + b"\n")
        return rid, queue

    async def call(self, op: str, **args: Any) -> dict:
        rid, queue = await self._send(op, args)
        try:
            return _reply(await queue.get())
        finally:
            self._forget(rid)

    async def execute(self, **args: Any) -> AsyncIterator[list[dict]]:
        """Yield the run's E2B lines in batches (whatever arrived together), the first batch being
        [{"type": "accepted"}] and the last ending with {"type": "end_of_execution"}. Closing the
        iterator early (the client went away) interrupts the run, or drops it if it is still
        waiting for its turn."""
        rid, queue = await self._send("execute", args)
        finished = accepted = False
        try:
            while not finished:
                batch = []
                msg = await queue.get()
                while True:
                    if "line" in msg:
                        if isinstance(msg["line"], dict):
                            batch.append(msg["line"])
                            accepted = True
                    else:
                        finished = True
                        try:
                            _reply(msg)
                        except E.SandlotError as e:
                            if not accepted:
                                raise  # nothing streamed yet: the request fails as a whole
                            batch.append({"type": "error", "name": type(e).__name__, "value": e.message,
                                          "traceback": ""})
                        batch.append({"type": "end_of_execution"})
                        break
                    if queue.empty():
                        break
                    msg = queue.get_nowait()
                yield batch
        finally:
            self._forget(rid)
            if not finished and self._input is not None:
                self._input.put_nowait(json.dumps({"id": next(self._ids), "op": "cancel",
                                                   "target": rid}).encode() + b"\n")

    def _forget(self, rid: int) -> None:
        self._waiting.pop(rid, None)
        self._received.pop(rid, None)


def _reply(msg: dict) -> dict:
    if "error" in msg:
        error = msg["error"] if isinstance(msg["error"], dict) else {}
        raise E.from_code(str(error.get("code", "internal")), str(error.get("message", "")))
    reply = msg.get("reply")
    return reply if isinstance(reply, dict) else {}
