"""Code contexts of one sandbox: the control plane's side of the in-sandbox driver (kernels/driver.py).

The driver is an internal process started through the agent, as root (E2B's kernels run as root)
or, where the sandbox has no root to give (the rootless tier), as its default user. This side
writes requests to its stdin and reads JSON lines from its stdout, routing each to the request it
answers. Everything it prints is untrusted: lines are size-bounded and parsed as JSON objects, and
a driver that breaks the protocol is killed. A driver that ends while the sandbox lives (killed by
sandbox code, crashed) is started again by itself, as E2B's supervisor restarts its interpreter:
after REVIVE_DELAY, longer each time it ends again soon after its start.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from .. import _exceptions as E
from ..protocol import contract
from .agent_client import AgentClient
from .sandbox_text import utf8

log = logging.getLogger("sandlot.kernels")

READY_TIMEOUT = 120.0  # a cold kernel takes ~0.6 s; a loaded machine may take far longer
REVIVE_DELAY = 1.0  # E2B's supervisor waits 1 s before it restarts its interpreter
REVIVE_MAX_DELAY = 32.0  # a driver that keeps ending soon after its start is left for its next request
SHORT_LIFE = 30.0  # a driver that ends sooner than this after its start doubles the next delay
MAX_LINE_MARGIN = 1 << 20  # a line may exceed the driver's output cap by its JSON framing only
# Lines that answer no request a driver may send before it is stopped: the driver sends none that
# are not JSON objects or name a request never made, and late ones only for a request given up
# (its run is interrupted then). A flood would cost the shared event loop parsing time (a driver
# taken over: sandbox code cannot reach the running driver's pipes, but the sandbox's root can put
# its own program where the driver's python3 is, see tests/interpreter), so it is bounded.
MAX_GARBAGE_BYTES = 64 << 10
# What the driver may leave unread on its stdin: it reads every request as it comes (a busy context
# queues its runs itself), so only a driver taken over leaves them, each up to the JSON body limit
# (4 MiB), held in this process until the driver reads them.
MAX_UNREAD_BYTES = 64 << 20
STOPPED = "the code interpreter stopped"


def request_bound(max_output: int) -> int:
    """What one request may receive in all. The driver bounds a run's output to max_output as it
    counts it (spaced JSON); its compact lines and their framing stay well under twice that. Code in
    the sandbox can write to the driver's stdout too, so the bound is kept here, not trusted to it."""
    return 2 * max_output + MAX_LINE_MARGIN


class KernelSession:
    """`user`: the sandbox's default user. Contexts start in its home, with HOME set to it, as E2B's
    in /home/user; the kernels run as root."""

    def __init__(self, agent: AgentClient, user: str, max_output: int):
        self.agent, self.user, self.max_output = agent, user, max_output
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Queue] = {}
        self._received: dict[int, int] = {}  # request id -> bytes routed to it so far
        self._last_id = 0  # the newest request's id
        self._garbage_bytes = self._late_bytes = 0  # of the driver running now: see _garbage
        self._started: asyncio.Future | None = None
        self._ready: asyncio.Future | None = None
        self._writer: asyncio.WriteTransport | None = None  # the driver's stdin
        self._output: int | None = None  # the driver's stdout (non-blocking, read by _on_output)
        self._buf = bytearray()
        self._tasks: list[asyncio.Task] = []
        self._pid: int | None = None
        self._closed = False  # close() was called: the driver is not started again by itself
        self._revival: asyncio.Task | None = None
        self._revive_delay = REVIVE_DELAY
        self._started_at = 0.0
        self._condemned = False  # the driver broke the protocol: it is being killed, not to be used

    # ---- the driver process ------------------------------------------------------------------

    def start(self) -> asyncio.Future:
        """Start the driver unless it runs; the future resolves once its default python context is
        ready. Safe to call again: a driver that stopped is replaced. Shared by every caller, so
        one that is cancelled (a client gone) does not cancel the start for the others."""
        self._closed = False
        if self._started is None or (self._started.done() and self._stopped()):
            self._started = asyncio.ensure_future(self._start())
        return asyncio.shield(self._started)

    def serving(self) -> bool:
        """Whether the driver runs and its default context came up: what /health on 49999 says."""
        return self._started is not None and self._started.done() and not self._stopped()

    def _stopped(self) -> bool:
        started = self._started
        return (self._condemned or started.cancelled() or started.exception() is not None or not self._tasks
                or self._tasks[0].done())

    async def _start(self) -> None:
        await self._stop_driver()
        await self._kill_orphans()
        self._condemned = False
        loop = asyncio.get_running_loop()
        self._ready = ready = loop.create_future()
        # The driver's stdin and stdout are pipes made here and handed to it through the agent:
        # requests and answers then go straight between the control plane and the driver (each
        # hop through the agent cost a wake-up and a re-framing, per line, both ways).
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        passed = [in_r, out_w]
        try:
            self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(in_w, "wb", buffering=0))
        except BaseException:
            for fd in (in_r, in_w, out_r, out_w):
                os.close(fd)
            raise
        os.set_blocking(out_r, False)
        self._output, self._buf = out_r, bytearray()
        self._garbage_bytes = self._late_bytes = 0
        loop.add_reader(out_r, self._on_output)
        try:
            events = await self._launch(in_r, out_w)
        except BaseException:
            _close_all(passed)
            self._stop_io()
            raise
        _close_all(passed)  # the driver holds them now: its exit must reach us as EOF
        self._started_at = loop.time()
        self._tasks = [asyncio.create_task(self._follow(events), name="sandlot-kernels")]
        try:
            await asyncio.wait_for(asyncio.shield(ready), READY_TIMEOUT)
        except asyncio.TimeoutError:
            await self._stop_driver()
            raise E.TimeoutError("the code interpreter did not start in time") from None

    async def _launch(self, stdin: int, stdout: int) -> AsyncIterator[dict]:
        """Start the driver as root, else (permission_denied: no root to be had) as the default
        user; its event stream once the agent has started it."""
        try:
            return await self._launch_as("root", stdin, stdout)
        except E.PermissionDenied:
            log.info("no root in this sandbox: its code interpreter runs as %s", self.user)
            return await self._launch_as(self.user, stdin, stdout)

    async def _launch_as(self, user: str, stdin: int, stdout: int) -> AsyncIterator[dict]:
        argv = ["-B", contract.KERNEL_DRIVER, "--max-output", str(self.max_output), "--user", self.user]
        events = self.agent.start("python3", argv, user=user, internal=True, stdio_fds=(stdin, stdout))
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        self._pid = first.get("start", {}).get("pid")
        return events

    async def _follow(self, events: AsyncIterator[dict]) -> None:
        """The agent's stream of the driver: its stderr (logged), its end. An end that nobody asked
        for (the task was not cancelled) is survived: the driver is started again."""
        try:
            async for event in events:
                if "stderr" in event:
                    log.debug("kernel driver: %s", event["stderr"][:2000].decode(errors="replace").rstrip())
                elif "end" in event:
                    break
        except E.SandlotError as e:
            log.debug("kernel driver stream ended: %s", e)
        else:
            self._revive_later()
        finally:
            # what the driver wrote before it ended is in the pipe: route it before failing the rest
            self._on_output(drain=True)
            self._stop_io()
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(E.RuntimeFailure(f"{STOPPED} while starting"))
            for queue in self._waiting.values():
                queue.put_nowait({"error": {"code": "internal", "message": STOPPED}})
            self._waiting.clear()
            self._received.clear()

    def _on_output(self, drain: bool = False) -> None:
        """Read what the driver wrote and route its lines. `drain`: all there is (bounded), at its end."""
        left = request_bound(self.max_output)
        while self._output is not None and left > 0:
            try:
                data = os.read(self._output, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._stop_io(writer=False)
                return
            left -= len(data)
            lines: list[bytes] = []
            if b"\n" in data:  # the buffer is split only at a line's end: once per line, not per read
                *lines, rest = (self._buf + data).split(b"\n")
                self._buf = bytearray(rest)
            else:
                self._buf += data
            breach = None
            for line in lines:
                if (breach := self._dispatch(line)) is not None:
                    break
            if breach is None and len(self._buf) > self.max_output + MAX_LINE_MARGIN:
                breach = "a line over its output limit"
            if breach is not None:
                self._condemn(f"sent {breach}")
                return
            if not drain:
                return

    def _condemn(self, what: str) -> None:
        """The driver broke the protocol: read no more of it and kill it."""
        log.warning("a code interpreter %s: stopping it", what)
        self._stop_io(writer=False)
        self._condemned = True  # the next request starts a fresh driver, whatever this one does
        asyncio.ensure_future(self._kill())

    def _stop_io(self, writer: bool = True) -> None:
        if self._output is not None:
            asyncio.get_running_loop().remove_reader(self._output)
            os.close(self._output)
            self._output = None
        if writer and self._writer is not None:
            self._writer.close()  # the driver reads EOF and exits
            self._writer = None

    def _dispatch(self, line: bytes) -> str | None:
        """Route one line; returns what was wrong with it if the driver must be stopped."""
        try:  # NaN and Infinity are not JSON: the responses that relay a line would fail on them
            msg = json.loads(line, parse_constant=_not_json)
        except (ValueError, RecursionError):  # RecursionError: nested past what json parses
            return self._garbage(line)
        if not isinstance(msg, dict):
            return self._garbage(line)
        ready = self._ready
        if "ready" in msg and ready is not None and not ready.done():
            if msg["ready"] is None:
                ready.set_exception(E.RuntimeFailure(f"the code interpreter failed to start: {msg.get('error')}"))
            else:
                ready.set_result(msg["ready"])
            return None
        rid = msg.get("id")
        queue = self._waiting.get(rid)
        if queue is None:
            return self._garbage(line, rid)
        received = self._received[rid] = self._received.get(rid, 0) + len(line)
        if received > request_bound(self.max_output):
            return "more output for one request than its limit allows"
        queue.put_nowait(msg)
        return None

    def _garbage(self, line: bytes, rid: object = None) -> str | None:
        """Count a line that answers no waiting request: late answers to requests given up, within
        one request's bound; anything else within MAX_GARBAGE_BYTES."""
        if isinstance(rid, int) and 0 < rid <= self._last_id:
            self._late_bytes += len(line) + 1
            return "more late output than one request may have" if self._late_bytes > request_bound(
                self.max_output) else None
        self._garbage_bytes += len(line) + 1
        return "lines that answer no request" if self._garbage_bytes > MAX_GARBAGE_BYTES else None

    def _write(self, request: dict) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(json.dumps(request).encode() + b"\n")
        if writer.get_write_buffer_size() > MAX_UNREAD_BYTES:
            writer.abort()  # what it holds is dropped now, not when the killed driver's pipe breaks
            self._writer = None
            self._condemn(f"left {MAX_UNREAD_BYTES >> 20} MiB of requests unread")
            return False
        return True

    async def _kill_orphans(self) -> None:
        """Drivers this session no longer talks to (a server restart adopted the sandbox; a protocol
        breach): their kernels would hold memory for contexts nobody can reach."""
        for proc in await self.agent.list_processes(all=True):
            if contract.KERNEL_DRIVER in proc.get("args", []):
                try:
                    await self.agent.send_signal(signal.SIGKILL, pid=proc["pid"])
                except E.SandlotError:
                    pass

    async def _kill(self) -> None:
        if self._pid is not None:
            try:
                await self.agent.send_signal(signal.SIGKILL, pid=self._pid)
            except E.SandlotError:
                pass

    def _revive_later(self) -> None:
        """The driver ended by itself: start it again after a delay (doubled, up to a limit, while
        it keeps ending soon after its start), unless the session was closed meanwhile."""
        if self._closed or (self._revival is not None and not self._revival.done()):
            return
        if asyncio.get_running_loop().time() - self._started_at > SHORT_LIFE:
            self._revive_delay = REVIVE_DELAY
        elif self._revive_delay >= REVIVE_MAX_DELAY:
            log.warning("the code interpreter keeps stopping: it starts again on its next request")
            self._revive_delay = REVIVE_DELAY
            return
        else:
            self._revive_delay = min(self._revive_delay * 2, REVIVE_MAX_DELAY)
        self._revival = asyncio.ensure_future(self._revive(self._revive_delay))

    async def _revive(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._closed:
            return
        log.info("the code interpreter stopped: starting it again")
        try:
            await self.start()
        except E.SandboxNotRunning:
            pass  # the sandbox is gone (its kill closes this session): nothing to supervise
        except Exception as e:  # noqa: BLE001 - a supervisor outlives what it supervises; its end tries again
            log.warning("restarting the code interpreter failed: %s", e)

    async def _stop_driver(self) -> None:
        """Stop talking to the driver: it reads EOF and exits."""
        self._stop_io()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def close(self) -> None:
        """For good (the sandbox's end kills the driver anyway): no more restarts."""
        self._closed = True
        if self._revival is not None:
            self._revival.cancel()
        await self._stop_driver()

    # ---- requests ----------------------------------------------------------------------------

    async def _send(self, op: str, args: dict) -> tuple[int, asyncio.Queue]:
        await self.start()
        rid = self._last_id = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        self._waiting[rid] = queue
        self._received[rid] = 0
        if not self._write({"id": rid, "op": op, **args}):
            self._forget(rid)
            raise E.RuntimeFailure(STOPPED)
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
            if not finished:
                self._write({"id": next(self._ids), "op": "cancel", "target": rid})

    def _forget(self, rid: int) -> None:
        self._waiting.pop(rid, None)
        self._received.pop(rid, None)


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _reply(msg: dict) -> dict:
    if "error" in msg:
        error = msg["error"] if isinstance(msg["error"], dict) else {}
        raise E.from_code(str(error.get("code", "internal")), utf8(str(error.get("message", ""))))
    reply = msg.get("reply")
    return reply if isinstance(reply, dict) else {}
