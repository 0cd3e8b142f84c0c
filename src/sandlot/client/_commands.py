"""`sandbox.commands`: shell commands in the foreground or the background, and their handles."""

from __future__ import annotations

import asyncio
import codecs
import inspect
import re
import time
from collections.abc import AsyncIterator, Callable
from re import Match, Pattern
from typing import Any, Literal, TypeVar, overload

from .. import _exceptions as E
from ..protocol import process_pb2 as pb
from ._http import Envd
from ._models import CommandResult, ProcessInfo

T = TypeVar("T")

# (stdout, stderr, pty): exactly one is set. Text for the pipes, raw bytes for terminals.
Output = tuple[str | None, str | None, bytes | None]


async def call_back(callback: Callable[[T], object] | None, value: T) -> None:
    """Callbacks may be plain functions or coroutine functions."""
    if callback is not None:
        result = callback(value)
        if inspect.isawaitable(result):
            await result


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


class AsyncCommandHandle:
    """A started command (or PTY): output so far, `wait()`, `kill()`, stdin, and iteration.

    A background task reads the output from the moment the command starts, so callbacks fire and
    `stdout`/`stderr` fill whether or not anyone iterates. Iterating yields `(stdout, stderr, pty)`
    tuples from the start of the output, then follows it live:

        handle = await sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 1; done", background=True)
        async for stdout, stderr, _ in handle:
            print(stdout or stderr, end="")
        result = await handle.wait()
    """

    pid: int
    """The process id in the sandbox."""

    def __init__(self, envd: Envd, events: AsyncIterator[Any], *,
                 on_stdout: Callable[[Any], object] | None = None, on_stderr: Callable[[Any], object] | None = None,
                 on_pty: Callable[[bytes], object] | None = None, check: bool = True, pty: bool = False,
                 raw: bool = False):
        """Internal: handles come from `commands.run()`, `commands.connect()`, `pty.create()`."""
        self.pid = 0
        self._raw = raw  # callbacks get bytes as they come; nothing is kept (see `commands.run`)
        self._envd = envd
        self._check = check
        self._input_field: Literal["pty", "stdin"] = "pty" if pty else "stdin"
        self._callbacks: dict[str, Callable[[Any], object] | None] = {
            "stdout": on_stdout, "stderr": on_stderr, "pty": on_pty}
        self._decoders = {k: codecs.getincrementaldecoder("utf-8")(errors="replace") for k in ("stdout", "stderr")}
        self._chunks: list[Output] = []
        self._parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = asyncio.Event()
        self._end: pb.ProcessEvent.EndEvent | None = None
        self._started_at = time.monotonic()
        self._duration = 0.0
        loop = asyncio.get_running_loop()
        self._started: asyncio.Future[int] = loop.create_future()
        # The whole stream is read in this one task: connectrpc arms the call's deadline in the task
        # that iterates, so reading the first event elsewhere would cancel the wrong task.
        self._task = loop.create_task(self._pump(events))
        self._task.add_done_callback(_retrieve)

    def __repr__(self) -> str:
        state = "running" if self.exit_code is None else f"exit_code={self.exit_code}"
        return f"<{type(self).__name__} pid={self.pid} {state}>"

    @property
    def stdout(self) -> str:
        """Standard output received so far."""
        return "".join(self._parts["stdout"])

    @property
    def stderr(self) -> str:
        """Standard error received so far."""
        return "".join(self._parts["stderr"])

    @property
    def exit_code(self) -> int | None:
        """None while the command runs."""
        return self._end.exit_code if self._end is not None else None

    def _push(self, kind: str, value: str | bytes) -> None:
        if isinstance(value, bytes):
            self._chunks.append((None, None, value))
        else:
            self._chunks.append((value if kind == "stdout" else None, value if kind == "stderr" else None, None))
            self._parts[kind].append(value)
        self._changed.set()  # wakes the iterators waiting on this event; later ones wait on a new one
        self._changed = asyncio.Event()

    async def _pump(self, events: AsyncIterator[Any]) -> None:
        try:
            async for response in events:
                event = response.event
                kind = event.WhichOneof("event")
                if not self._started.done():  # every process stream opens with `start`
                    if kind != "start":
                        raise E.SandlotError(f"expected a start event, got {kind!r}")
                    self.pid = event.start.pid
                    self._started.set_result(self.pid)
                elif kind == "data":
                    which = event.data.WhichOneof("output")
                    raw: bytes = getattr(event.data, which)
                    value: str | bytes = (self._decoders[which].decode(raw)
                                          if which in self._decoders and not self._raw else raw)
                    if value:
                        if not self._raw:
                            self._push(which, value)
                        await call_back(self._callbacks[which], value)
                elif kind == "end":
                    self._end = event.end
            if not self._started.done():
                raise E.SandlotError("the process stream ended before the process started")
            for which, decoder in self._decoders.items():  # a split multi-byte character at the end
                if not self._raw and (tail := decoder.decode(b"", final=True)):
                    self._push(which, tail)
                    await call_back(self._callbacks[which], tail)
            if self._end is None:
                raise await self._envd.explain(E.SandlotError("the command ended without an end event"))
        except BaseException as e:  # failing before the start event fails whoever waits for it
            if not self._started.done():
                if isinstance(e, asyncio.CancelledError):
                    self._started.cancel()
                else:
                    self._started.set_exception(e)
            raise
        finally:
            self._duration = time.monotonic() - self._started_at
            self._changed.set()

    async def _until_started(self) -> None:
        try:
            await asyncio.shield(self._started)
        except asyncio.CancelledError:  # our caller gave up: stop reading too
            self._task.cancel()
            raise

    async def _finished(self) -> None:
        """Wait for the output to end; being cancelled here leaves the reader running."""
        await asyncio.wait({self._task})
        if self._task.cancelled():
            raise E.SandlotError(f"stopped receiving output of process {self.pid} (disconnected)")
        if (exc := self._task.exception()) is not None:
            raise exc

    async def wait(self) -> CommandResult:
        """Wait for the command to end. Raises CommandExitError on a non-zero exit code, unless the
        command was started with `check=False`."""
        await self._finished()
        end = self._end
        assert end is not None  # _finished() raised otherwise
        error = end.error if end.HasField("error") else None
        if end.exit_code != 0 and self._check:
            raise E.CommandExitError(self.stdout, self.stderr, end.exit_code, error)
        return CommandResult(self.stdout, self.stderr, end.exit_code, error, self._duration)

    async def __aiter__(self) -> AsyncIterator[Output]:
        i = 0
        while True:
            changed = self._changed
            while i < len(self._chunks):
                yield self._chunks[i]
                i += 1
            if self._task.done():
                break
            await changed.wait()
        await self._finished()

    async def wait_for_log(self, pattern: str | Pattern[str], timeout: float | None = 30) -> Match[str]:
        """The first match of `pattern` (a regular expression) in the output (stdout, then
        stderr), as soon as it is printed: the output arrives pushed, nothing polls (a handle from
        `connect()` starts with the output the process printed before). Raises TimeoutError after
        `timeout` seconds (None or 0: no limit), CommandExitError if the command ends without it."""
        if self._raw:
            raise E.InvalidArgument("wait_for_log() reads the text output, which a raw=True command does not keep")
        rx = re.compile(pattern)

        async def watch() -> Match[str]:
            while True:
                changed = self._changed
                if m := rx.search(self.stdout) or rx.search(self.stderr):
                    return m
                if self._task.done():
                    await self._finished()
                    end = self._end
                    assert end is not None  # _finished() raised otherwise
                    raise E.CommandExitError(self.stdout, self.stderr, end.exit_code,
                                             f"the command ended without printing {rx.pattern!r}")
                await changed.wait()

        try:
            async with asyncio.timeout(timeout or None):
                return await watch()
        except TimeoutError as e:
            if isinstance(e, E.SandlotError):  # the command's own deadline, not ours
                raise
            raise E.TimeoutError(f"{rx.pattern!r} did not appear within {timeout}s") from None

    async def wait_for_port(self, port: int, timeout: float = 30, request_timeout: float | None = None) -> None:
        """Return once something in the sandbox accepts connections on `port` (the server watches,
        see `AsyncSandbox.wait_for_port`)."""
        await wait_for_port(self._envd, port, timeout, request_timeout)

    async def kill(self, request_timeout: float | None = None) -> bool:
        """SIGKILL the command. False if it had already ended."""
        return await AsyncCommands(self._envd).kill(self.pid, request_timeout=request_timeout)

    async def send_stdin(self, data: str | bytes, request_timeout: float | None = None) -> None:
        """Write to the command's stdin (started with `stdin=True`) or to its terminal."""
        await send_input_to(self._envd, self.pid, data, self._input_field, request_timeout)

    async def close_stdin(self, request_timeout: float | None = None) -> None:
        """Signal end-of-file on stdin."""
        await AsyncCommands(self._envd).close_stdin(self.pid, request_timeout=request_timeout)

    async def disconnect(self) -> None:
        """Stop receiving output; the command keeps running (see `commands.connect()`)."""
        self._task.cancel()
        await asyncio.wait({self._task})


async def send_input_to(envd: Envd, pid: int, data: str | bytes, field: Literal["pty", "stdin"],
                        request_timeout: float | None = None) -> None:
    process_input = pb.ProcessInput(pty=_bytes(data)) if field == "pty" else pb.ProcessInput(stdin=_bytes(data))
    request = pb.SendInputRequest(process=pb.ProcessSelector(pid=pid), input=process_input)
    await envd.call(envd.process.send_input, request, request_timeout=request_timeout)


async def wait_for_port(envd: Envd, port: int, timeout: float, request_timeout: float | None) -> None:
    """POST .../ports/{port}/wait: the server tries the port inside the sandbox until it opens or
    `timeout` passes (504: TimeoutError); `request_timeout` is the allowance for the answer beyond it."""
    allowance = envd.transport.config.timeout(request_timeout)
    await envd.transport.api("POST", f"/sandboxes/{envd.sandbox_id}/ports/{port}/wait", json={"timeout": timeout},
                             timeout=None if allowance is None else timeout + allowance)


def _retrieve(task: asyncio.Task[None]) -> None:
    """The reader's error is raised by `wait()`; asyncio need not also log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def attach(envd: Envd, events: AsyncIterator[Any], request_timeout: float | None = None,
                 **handle_options: Any) -> AsyncCommandHandle:
    """A handle on a process stream, returned once the process has started; `request_timeout`
    (else the connection's) bounds the wait for the start."""
    limit = envd.transport.config.timeout(request_timeout)
    handle = AsyncCommandHandle(envd, events, **handle_options)
    try:
        async with asyncio.timeout(limit):
            await handle._until_started()
    except TimeoutError as e:
        if isinstance(e, E.SandlotError):  # the server's own deadline, not ours
            raise
        raise E.TimeoutError(f"the process did not start within {limit:g}s (request_timeout)") from None
    return handle


class AsyncCommands:
    """Shell commands in the sandbox (`sandbox.commands`).

        result = await sandbox.commands.run("echo hello")
        assert result.stdout == "hello\\n" and result.success
    """

    def __init__(self, envd: Envd):
        self._envd = envd

    @overload
    async def run(self, cmd: str, background: Literal[False] = False, envs: dict[str, str] | None = None,
                  cwd: str | None = None, user: str | None = None, timeout: float | None = 60,
                  on_stdout: Callable[[str], object] | None = None, on_stderr: Callable[[str], object] | None = None,
                  stdin: bool = False, check: bool = True, request_timeout: float | None = None, *,
                  raw: Literal[False] = False, tag: str | None = None) -> CommandResult: ...

    @overload
    async def run(self, cmd: str, background: Literal[True], envs: dict[str, str] | None = None,
                  cwd: str | None = None, user: str | None = None, timeout: float | None = 60,
                  on_stdout: Callable[[str], object] | None = None, on_stderr: Callable[[str], object] | None = None,
                  stdin: bool = False, check: bool = True, request_timeout: float | None = None, *,
                  raw: Literal[False] = False, tag: str | None = None) -> AsyncCommandHandle: ...

    @overload
    async def run(self, cmd: str, background: bool = False, envs: dict[str, str] | None = None,
                  cwd: str | None = None, user: str | None = None, timeout: float | None = 60,
                  on_stdout: Callable[[bytes], object] | None = None, on_stderr: Callable[[bytes], object] | None = None,
                  stdin: bool = False, check: bool = True, request_timeout: float | None = None, *,
                  raw: Literal[True], tag: str | None = None) -> CommandResult | AsyncCommandHandle: ...

    @overload
    async def run(self, cmd: str, background: bool = False, envs: dict[str, str] | None = None,
                  cwd: str | None = None, user: str | None = None, timeout: float | None = 60,
                  on_stdout: Callable[[Any], object] | None = None, on_stderr: Callable[[Any], object] | None = None,
                  stdin: bool = False, check: bool = True, request_timeout: float | None = None, *,
                  raw: bool = False, tag: str | None = None) -> CommandResult | AsyncCommandHandle: ...

    async def run(self, cmd: str, background: bool = False, envs: dict[str, str] | None = None,
                  cwd: str | None = None, user: str | None = None, timeout: float | None = 60,
                  on_stdout: Callable[[Any], object] | None = None, on_stderr: Callable[[Any], object] | None = None,
                  stdin: bool = False, check: bool = True, request_timeout: float | None = None, *,
                  raw: bool = False, tag: str | None = None) -> CommandResult | AsyncCommandHandle:
        """Run `cmd` with `/bin/bash -l -c`.

        Foreground (default): wait and return a CommandResult; a non-zero exit raises
        CommandExitError unless `check=False`. `background=True` returns an AsyncCommandHandle as
        soon as the process started. `timeout` (seconds, None or 0 = no limit) bounds the whole
        command: the server kills it then and TimeoutError is raised. `stdin=True` keeps stdin open
        for `send_stdin()`. Callbacks get text chunks as they arrive; with `raw=True` they get the
        bytes exactly as the command wrote them, and nothing is kept (`stdout`/`stderr` of the
        result and handle stay empty): for binary or endless output. `request_timeout` bounds the
        wait for the process to start (as every call's `request_timeout`: seconds, 0 = no limit,
        default the sandbox's, 60 s unless given to `create()`/`connect()`). `tag` names the process
        while it runs (unique among running ones): `get_process(tag)`, `connect(tag)`.
        """
        config = pb.ProcessConfig(cmd="/bin/bash", args=["-l", "-c", cmd], envs=envs or {})
        if cwd:
            config.cwd = cwd
        start = pb.StartRequest(process=config, stdin=stdin)
        if tag is not None:
            start.tag = tag
        events = self._envd.stream(self._envd.process.start, start, user=user, timeout=timeout)
        handle = await attach(self._envd, events, request_timeout, on_stdout=on_stdout, on_stderr=on_stderr,
                              check=check, raw=raw)
        if background:
            return handle
        try:
            return await handle.wait()
        except E.TimeoutError as e:
            raise E.TimeoutError(f"the command did not finish within {timeout}s (it was killed): {cmd[:200]}") from e
        except asyncio.CancelledError:  # a foreground command belongs to its caller
            await asyncio.shield(handle.kill())
            raise

    async def connect(self, pid: int | str, timeout: float | None = None,
                      on_stdout: Callable[[str], object] | None = None, on_stderr: Callable[[str], object] | None = None,
                      request_timeout: float | None = None) -> AsyncCommandHandle:
        """Attach to a running process by pid or tag; the handle first gets the process's latest
        output (up to 64 KiB, kept by sandlot's agent), then what follows."""
        selector = pb.ProcessSelector(tag=pid) if isinstance(pid, str) else pb.ProcessSelector(pid=pid)
        request = pb.ConnectRequest(process=selector)
        events = self._envd.stream(self._envd.process.connect, request, timeout=timeout)
        return await attach(self._envd, events, request_timeout, on_stdout=on_stdout, on_stderr=on_stderr)

    async def list(self, request_timeout: float | None = None) -> list[ProcessInfo]:
        """Processes started through envd that are still running (background ones included)."""
        response = await self._envd.call(self._envd.process.list, pb.ListRequest(), request_timeout=request_timeout)
        return [ProcessInfo.from_proto(p) for p in response.processes]

    async def get_process(self, tag: str, request_timeout: float | None = None) -> ProcessInfo | None:
        """The running process started with `tag`, or None."""
        return next((p for p in await self.list(request_timeout) if p.tag == tag), None)

    async def kill(self, pid: int, request_timeout: float | None = None) -> bool:
        """SIGKILL a process. False if there is no such process."""
        request = pb.SendSignalRequest(process=pb.ProcessSelector(pid=pid), signal=pb.SIGNAL_SIGKILL)
        try:
            await self._envd.call(self._envd.process.send_signal, request, request_timeout=request_timeout)
        except E.NotFound:
            return False
        return True

    async def send_stdin(self, pid: int, data: str | bytes, request_timeout: float | None = None) -> None:
        """Write to the stdin of a process started with `stdin=True`."""
        await send_input_to(self._envd, pid, data, "stdin", request_timeout)

    async def close_stdin(self, pid: int, request_timeout: float | None = None) -> None:
        """Signal end-of-file on a process's stdin."""
        request = pb.CloseStdinRequest(process=pb.ProcessSelector(pid=pid))
        await self._envd.call(self._envd.process.close_stdin, request, request_timeout=request_timeout)
