"""AgentClient: the control plane's side of the agent protocol (protocol/wire.py for the frames,
protocol/contract.py for the operations), one unix connection per request at a time.

A client made with ``keep=True`` (the service's own, one per sandbox) keeps the connection of a
command or a unary call that ended cleanly and sends its next such request on it: a command then
costs neither side a connect, an accept and a close (~15% of the server's path for a command).
It keeps at most KEPT_CONNECTIONS idle, and ``close()`` closes them when the sandbox goes.

Unary ops are coroutines returning the reply's payload; streams are async iterators that close
their connection when closed early (``aclose()``, or when dropped). Every failure is a SandlotError:
an agent's error frame becomes the class of its Connect code (``_exceptions.from_code``, which keeps
the code itself, e.g. ``failed_precondition``); an agent that cannot be reached or a stream that
breaks off is SandboxNotRunning ("unavailable"); what the sandbox itself ran out of (disk, files,
memory: ``resource_exhausted``) is SandboxExhausted, which E2B's envd answers with 507.

Process events are dicts: ``{"start": {"pid": N}}``, ``{"stdout": bytes}``, ``{"stderr": bytes}``,
``{"pty": bytes}``, ``{"keepalive": {}}`` and last ``{"end": {"exit_code", "exited", "status"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import socket
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

from .. import _exceptions as E
from ..protocol import contract
from ..protocol import wire
from .sandbox_text import utf8

_OUTPUT = {wire.STDOUT: "stdout", wire.STDERR: "stderr", wire.PTY: "pty"}
_READ_LIMIT = 1 << 20
KEPT_CONNECTIONS = 1  # idle per sandbox: one fd each side; a sandbox's commands mostly come one at a time


class SandboxExhausted(E.ResourceExhausted):
    """The sandbox ran out of disk space, files or memory (E2B's envd answers 507)."""

    status = 507


def agent_error(code: str, message: str) -> E.SandlotError:
    """The error an agent's reply with this Connect code name stands for (its message may name a
    path that is not UTF-8: every answer that relays it is UTF-8)."""
    message = utf8(message)
    if code == "resource_exhausted":
        return SandboxExhausted(message)
    return E.from_code(code, message)


def _selector(pid: int | None, tag: str | None) -> dict:
    if pid is not None:
        return {"pid": pid}
    if tag is not None:
        return {"tag": tag}
    raise ValueError("give pid or tag")


def _json(payload: bytes) -> dict:
    try:
        obj = wire.decode_json(payload)
    except wire.WireError as e:
        raise E.SandboxNotRunning(f"the agent broke the protocol: {e}") from None
    error = obj.get("error")
    if error is not None:
        error = error if isinstance(error, dict) else {}
        raise agent_error(str(error.get("code", "internal")), str(error.get("message", "")))
    return obj


def _broken(what: str) -> E.SandboxNotRunning:
    return E.SandboxNotRunning(f"the agent broke the protocol: {what}")


def _text(v: Any) -> bool:
    return type(v) is str


def _opt_text(v: Any) -> bool:
    return v is None or type(v) is str


def _text_map(v: Any) -> bool:
    return isinstance(v, dict) and all(type(k) is str and type(x) is str for k, x in v.items())


def _flag(v: Any) -> bool:
    return type(v) is bool


def _number(low: float, high: float, types: tuple[type, ...] = (int,)) -> Callable[[Any], bool]:
    return lambda v: type(v) in types and math.isfinite(v) and low <= v <= high


_pid, _int32 = _number(0, 2**31 - 1), _number(-2**31, 2**31 - 1)

# What the server reads of the agent's replies, field by field (a missing field is None), as
# data. The sandbox's root user controls its agent: a reply that is not so is a broken protocol
# here, never a KeyError or a 500 later. Numbers are bounded by what their protobuf fields hold
# (int64, uint32, a Timestamp's years 1 to 9999); what the agent sends past these is not read.
_SHAPES: dict[str, dict[str, Callable[[Any], bool]]] = {
    "entry": {**dict.fromkeys(("name", "type", "path", "permissions", "owner", "group"), _text),
              "size": _number(0, 2**63 - 1), "mode": _number(0, 2**32 - 1),
              "mtime": _number(-62135596800, 253402300799, (int, float)),
              "symlink_target": _opt_text, "metadata": lambda v: v is None or _text_map(v)},
    "process": {"pid": _pid, "cmd": _text, "tag": _opt_text, "cwd": _opt_text, "envs": _text_map,
                "args": lambda v: isinstance(v, list) and all(type(a) is str for a in v)},
    "session": {"id": _text, "user": _text, "pid": _pid, "cwd": _opt_text, "envs": _text_map, "busy": _flag,
                "created_at": _number(0, 253402300799, (int, float))},
    "start": {"pid": _pid},
    "watch event": {"name": _text, "type": _text},  # and its entry, if any (an "entry")
    "end": {"exit_code": _int32, "status": _opt_text, "error": _opt_text},  # and one of the two below
    "process end": {"exited": _flag, "status": _text},
    "session end": {"timed_out": _flag, "interrupted": _flag, "shell_exited": _flag},
}


def _shaped(value: Any, shape: str) -> Any:
    """`value` if it is a `shape` (see _SHAPES), else a broken protocol."""
    if not isinstance(value, dict):
        raise _broken(f"a {shape} is not an object")
    for key, check in _SHAPES[shape].items():
        if not check(value.get(key)):
            raise _broken(f"a {shape} with a bad {key!r}")
    return value


def _entry(entry: Any) -> dict:
    return _shaped(entry, "entry")


def _listed(value: Any, shape: str) -> list:
    if not isinstance(value, list):
        raise _broken(f"a list of {shape}s is not a list")
    return [_shaped(v, shape) for v in value]


async def _read_frame(reader: asyncio.StreamReader):
    """Return (kind, payload), or (None, b"") at a clean end of stream."""
    head = await _read_head(reader)
    return (None, b"") if head is None else (head[:1], await _read_payload(reader, head))


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """A frame's header, or None at a clean end of stream. Cancelled while it waits, it has read
    nothing (readexactly takes bytes only once all are in)."""
    try:
        return await reader.readexactly(wire.HEADER_SIZE)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise wire.WireError("truncated frame header")


async def _first_head(reader: asyncio.StreamReader) -> bytes | None:
    """The first frame header on a kept connection; None if the connection ended or broke before
    any byte came: the agent had closed it without reading the request (one that reads a request
    answers it), which may then go again on a new connection."""
    try:
        return await _read_head(reader)
    except ConnectionError:
        return None


async def _read_payload(reader: asyncio.StreamReader, head: bytes) -> bytes:
    length = int.from_bytes(head[1:], "big")
    if length > wire.MAX_FRAME:
        raise wire.WireError("frame too large: %d bytes" % length)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise wire.WireError("truncated frame")


class AgentClient:
    def __init__(self, socket_path: str, keep: bool = False):
        self.socket_path = str(socket_path)
        self.keep = keep
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    # ---- plumbing ----------------------------------------------------------------------------

    def _reuse(self, request: dict):
        """A kept connection with ``request`` sent on it, or None. If its first read finds the
        connection's end, the agent had closed it before reading the request: send it again on a
        new connection (``_open``)."""
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                writer.write(wire.encode_json({**request, "keep": True}))
                return reader, writer
            writer.close()
        return None

    async def _open(self, request: dict, fds: Sequence[int] = (), keep: bool = False):
        """Connect and send the request, with ``fds`` as SCM_RIGHTS if any (the caller keeps and
        closes its own copies). ``keep``: ask the agent to keep the connection after this request
        (the caller hands it back with ``_release``)."""
        if not fds:
            if keep and self.keep:
                request = {**request, "keep": True}
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=_READ_LIMIT)
            except OSError as e:
                raise E.SandboxNotRunning(f"cannot reach the sandbox agent: {e}") from None
            writer.write(wire.encode_json(request))
            return reader, writer
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, self.socket_path)
            frame = wire.encode_json(request)
            # a new connection's buffer is empty: a request frame goes out whole
            if socket.send_fds(sock, [frame], list(fds)) != len(frame):
                raise OSError("the request was cut short")
            return await asyncio.open_unix_connection(sock=sock, limit=_READ_LIMIT)
        except OSError as e:
            sock.close()
            raise E.SandboxNotRunning(f"cannot reach the sandbox agent: {e}") from None

    def _release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A kept request's connection, its op over and every frame of it read: kept for the next."""
        if self.keep and len(self._idle) < KEPT_CONNECTIONS and not reader.at_eof() and not writer.is_closing():
            self._idle.append((reader, writer))
        else:
            writer.close()

    def close(self) -> None:
        """Close the kept connections, and keep none from now on (the sandbox is going)."""
        self.keep = False
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader):
        try:
            return await _read_frame(reader)
        except (wire.WireError, ConnectionError) as e:
            raise E.SandboxNotRunning(f"the agent connection broke: {e}") from None

    async def _reply(self, reader: asyncio.StreamReader) -> dict:
        return _reply_event(*await self._frame(reader))

    async def call(self, op: str, **args: Any) -> dict:
        """Send one unary request and return its reply: a stream of one event (AgentStream holds
        the kept connection's steps once, for both)."""
        stream = AgentStream(self, {"op": op, **args}, (), _reply_event, last=lambda _: True, keep=True)
        try:
            return await stream.read()
        finally:
            stream.close()  # cancelled: the connection goes (once read, the stream kept or closed it)

    # ---- agent and processes -----------------------------------------------------------------

    async def ping(self) -> dict:
        return await self.call(contract.PING)

    async def env(self) -> dict:
        envs = (await self.call(contract.ENV)).get("envs")
        if not _text_map(envs):
            raise _broken("the envs are not an object of strings")
        return envs

    def start(self, cmd: str, args: list[str] = (), *, envs: dict | None = None, cwd: str | None = None,
              user: str | None = None, pty: dict | None = None, stdin: bool = False,
              tag: str | None = None, timeout_ms: int = 0, internal: bool = False,
              stdio_fds: tuple[int, int] | None = None) -> AgentStream:
        """Start a process; yields its events (see the module doc). ``pty`` is {"cols", "rows"}.
        ``stdio_fds``: (stdin, stdout) fds the process gets instead of pipes to the agent, so the
        caller talks to it directly (its stdout then never comes as events)."""
        request = {"op": contract.PROCESS_START, "cmd": cmd, "args": list(args), "envs": envs or {}, "cwd": cwd,
                   "user": user, "pty": pty, "stdin": stdin, "tag": tag, "timeout_ms": timeout_ms,
                   "internal": internal, "stdio_fds": stdio_fds is not None}
        return self._process_events(request, stdio_fds or ())

    def connect(self, *, pid: int | None = None, tag: str | None = None) -> AgentStream:
        """Follow a running process: its events from now on."""
        return self._process_events({"op": contract.PROCESS_CONNECT, **_selector(pid, tag)})

    def _process_events(self, request: dict, fds: Sequence[int] = (), end: str = "process end") -> AgentStream:
        return AgentStream(self, request, fds, functools.partial(_process_event, end),
                           last=lambda event: "end" in event, keep=True)

    async def list_processes(self, all: bool = False) -> list[dict]:  # noqa: A002 - the wire's name
        return _listed((await self.call(contract.PROCESS_LIST, all=all)).get("processes"), "process")

    async def send_input(self, data: bytes, *, pid: int | None = None, tag: str | None = None,
                         pty: bool = False) -> None:
        await self.call(contract.PROCESS_INPUT, data=base64.b64encode(data).decode(), pty=pty, **_selector(pid, tag))

    async def stream_input(self, chunks: AsyncIterable[bytes], *, pid: int | None = None,
                           tag: str | None = None, pty: bool = False) -> None:
        """Send every chunk as process input, in order; returns when the agent has written them all."""
        reader, writer = await self._open({"op": contract.PROCESS_STREAM_INPUT, **_selector(pid, tag)})
        try:
            try:
                async for chunk in chunks:
                    writer.write(wire.encode_json({"data": base64.b64encode(chunk).decode(), "pty": pty}))
                    await writer.drain()
                writer.write_eof()
            except ConnectionError:
                pass  # the agent refused and closed; its reply says why
            await self._reply(reader)
        finally:
            writer.close()

    async def close_stdin(self, *, pid: int | None = None, tag: str | None = None) -> None:
        await self.call(contract.PROCESS_CLOSE_STDIN, **_selector(pid, tag))

    async def send_signal(self, signal: int, *, pid: int | None = None, tag: str | None = None) -> None:
        await self.call(contract.PROCESS_SIGNAL, signal=int(signal), **_selector(pid, tag))

    async def resize(self, cols: int, rows: int, *, pid: int | None = None, tag: str | None = None) -> None:
        await self.call(contract.PROCESS_RESIZE, cols=cols, rows=rows, **_selector(pid, tag))

    # ---- files -------------------------------------------------------------------------------

    async def stat(self, path: str, user: str | None = None) -> dict:
        return _entry((await self.call(contract.FILES_STAT, path=path, user=user)).get("entry"))

    async def list_dir(self, path: str, depth: int = 1, user: str | None = None) -> list[dict]:
        reply = await self.call(contract.FILES_LIST, path=path, depth=depth, user=user)
        return _listed(reply.get("entries"), "entry")

    async def make_dir(self, path: str, user: str | None = None) -> dict:
        return _entry((await self.call(contract.FILES_MKDIR, path=path, user=user)).get("entry"))

    async def move(self, source: str, destination: str, user: str | None = None) -> dict:
        return _entry((await self.call(contract.FILES_MOVE, source=source, destination=destination,
                                       user=user)).get("entry"))

    async def remove(self, path: str, user: str | None = None) -> None:
        await self.call(contract.FILES_REMOVE, path=path, user=user)

    async def read(self, path: str, user: str | None = None) -> AsyncIterator[dict | bytes]:
        """Yields the agent's first reply ({"entry": ENTRY, "length": int | None}), then the
        file's content in chunks."""
        reader, writer = await self._open({"op": contract.FILES_READ, "path": path, "user": user})
        try:
            opened = await self._reply(reader)
            length = opened.get("length")
            if length is not None and (type(length) is not int or length < 0):
                raise _broken("a read's length is not a size")
            yield {"entry": _entry(opened.get("entry")), "length": length}
            while True:
                kind, payload = await self._frame(reader)
                if kind == wire.DATA:
                    yield payload
                elif kind == wire.END:
                    return
                elif kind == wire.JSON:
                    _json(payload)  # an error after the entry (the file became unreadable)
                else:
                    raise E.SandboxNotRunning("the file stream broke off")
        finally:
            writer.close()

    async def write(self, path: str, user: str | None, chunks: AsyncIterable[bytes] | bytes,
                    metadata: dict | None = None, append: bool = False) -> dict:
        """Write (or append to) a file from bytes or an async iterable of bytes; returns its ENTRY."""
        reader, writer = await self._open({"op": contract.FILES_WRITE, "path": path, "user": user,
                                           "metadata": metadata, "append": append})
        try:
            try:
                if isinstance(chunks, (bytes, bytearray, memoryview)):
                    await self._send_data(writer, chunks)
                else:
                    async for chunk in chunks:
                        await self._send_data(writer, chunk)
                writer.write(wire.encode(wire.END, b""))
            except ConnectionError:
                pass  # the agent refused early and closed; its reply says why
            return _entry((await self._reply(reader)).get("entry"))
        finally:
            writer.close()

    @staticmethod
    async def _send_data(writer: asyncio.StreamWriter, data) -> None:
        view = memoryview(data)
        for i in range(0, len(view), wire.CHUNK):
            chunk = view[i:i + wire.CHUNK]
            writer.write(wire.head(wire.DATA, len(chunk)))  # the chunk goes out as it is, not copied
            writer.write(chunk)
            await writer.drain()

    def watch(self, path: str, user: str | None = None, recursive: bool = False,
              include_entry: bool = False) -> AgentStream:
        """Yields ``{"start": {}}``, then ``{"event": {"name", "type", "entry"?}}`` and keepalives."""
        return AgentStream(self, {"op": contract.FILES_WATCH, "path": path, "user": user, "recursive": recursive,
                                  "include_entry": include_entry}, (), _watch_event)

    # ---- sessions (agent/sessions.py) ---------------------------------------------------------

    async def session_create(self, session_id: str | None = None, *, user: str | None = None,
                             cwd: str | None = None, envs: dict | None = None) -> dict:
        return _shaped((await self.call(contract.SESSION_CREATE, id=session_id, user=user, cwd=cwd,
                                        envs=envs or {})).get("session"), "session")

    def session_exec(self, session_id: str, cmd: str, *, stdin: bytes | None = None, timeout_ms: int = 0,
                     announce: bool = False) -> AgentStream:
        """Run a command in a session: yields {"start": {"pid": N}} (the shell) when it runs (after
        the session's earlier commands; only if `announce`), then {"stdout": bytes}, {"stderr":
        bytes}, keepalives and last {"end": {"exit_code", "timed_out", "interrupted",
        "shell_exited"}}. Closing the iterator early interrupts the command."""
        request = {"op": contract.SESSION_EXEC, "id": session_id, "cmd": cmd, "timeout_ms": timeout_ms,
                   "stdin": base64.b64encode(stdin).decode() if stdin is not None else None,
                   "announce": announce}
        return self._process_events(request, end="session end")

    async def session_get(self, session_id: str) -> dict:
        return _shaped((await self.call(contract.SESSION_GET, id=session_id)).get("session"), "session")

    async def session_list(self) -> list[dict]:
        return _listed((await self.call(contract.SESSION_LIST)).get("sessions"), "session")

    async def session_delete(self, session_id: str) -> None:
        await self.call(contract.SESSION_DELETE, id=session_id)


class Readable:
    """An async iterator over its `read()` and `aclose()`: iterated, a cancel closes it, as it
    would an async generator (callers that wait under a timeout call `read()` itself)."""

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        try:
            return await self.read()
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def read(self) -> dict:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class AgentStream(Readable):
    """A stream op's events (a process's, a session command's, a watch's; a unary call's one
    reply): the frames of one agent connection, as an async iterator of dicts.

    ``read()`` cancelled while it waits loses nothing: the next read goes on where it stopped. So
    envd/streams.py waits for the next event under a timeout (keepalives, the deadline, the
    sandbox's end) in the request's own task; with an async generator it needed a task and three
    loop turns per event. Cancelled before its request is sent, the stream has not begun and the
    next read begins it; cancelled after, it is broken (a second request would start a second
    process). Iterated (``anext``, ``async for``), a cancel closes it, as it would an async
    generator. Closing it (``aclose()``, or dropping it) closes the connection, which ends what
    the agent runs for it where the op says so (a session's command, a watch)."""

    def __init__(self, client: AgentClient, request: dict, fds: Sequence[int],
                 event: Callable[[bytes | None, bytes], dict | None],
                 last: Callable[[dict], bool] = lambda _: False, keep: bool = False):
        self._client, self._request, self._fds = client, request, fds
        self._event, self._last, self._keep = event, last, keep
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._head: bytes | None = None  # a frame's header whose payload a cancel kept from arriving
        self._state = "new"  # -> "opening" -> "open" (or "kept": sent on a kept connection, no frame yet) -> "over"

    async def read(self) -> dict:
        """The next event; StopAsyncIteration past the last."""
        if self._state == "over":
            raise StopAsyncIteration
        if self._state == "opening":
            raise E.SandboxNotRunning("the stream was interrupted while it began")
        try:
            if self._state == "new":
                self._state = "opening"
                kept = self._client._reuse(self._request) if self._keep else None
                self._reader, self._writer = kept or await self._client._open(self._request, self._fds, self._keep)
                self._state = "kept" if kept else "open"
            if self._head is None and self._state == "kept":
                self._head = await _first_head(self._reader)
                self._state = "open"
                if self._head is None:  # the agent had closed it before reading the request: again, anew
                    self._writer.close()
                    self._state, self._writer = "opening", None
                    self._reader, self._writer = await self._client._open(self._request, self._fds, self._keep)
                    self._state = "open"
            if self._head is None:
                self._head = await _read_head(self._reader) or b""  # b"": the connection's end
            payload = await _read_payload(self._reader, self._head) if self._head else b""
            kind, self._head = self._head[:1] or None, None
            event = self._event(kind, payload)
        except asyncio.CancelledError:
            if self._state == "opening" and self._writer is None and not self._fds:
                self._state = "new"  # nothing was sent: the next read begins it
            raise
        except (wire.WireError, ConnectionError) as e:
            self.close()
            raise E.SandboxNotRunning(f"the agent connection broke: {e}") from None
        except BaseException:
            self.close()
            raise
        if event is None:
            self.close()
            raise StopAsyncIteration
        if self._last(event):
            self._state = "over"
            reader, writer, self._reader, self._writer = self._reader, self._writer, None, None
            if self._keep:
                self._client._release(reader, writer)
            else:
                writer.close()
        return event

    def close(self) -> None:
        self._state = "over"
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:  # dropped unclosed (an async generator was closed by asyncio)
        if self._writer is not None:
            try:
                self._writer.close()
            except RuntimeError:
                pass  # its loop is closed: so is the connection


def _reply_event(kind: bytes | None, payload: bytes) -> dict:
    if kind != wire.JSON:
        raise E.SandboxNotRunning("the agent closed the connection without a reply")
    return _json(payload)


def _process_event(end: str, kind: bytes | None, payload: bytes) -> dict:
    """An event of a process stream: one of start, end (a `end`: "process end" or "session end")
    and keepalive, or output."""
    if kind == wire.JSON:
        event = _json(payload)
        what = next(iter(event)) if len(event) == 1 else None
        if what == "end":
            _shaped(_shaped(event["end"], "end"), end)
        elif what == "start":
            _shaped(event["start"], "start")
        elif what != "keepalive":
            raise _broken("a process event is not one of start, end and keepalive")
        return event
    if kind in _OUTPUT:
        return {_OUTPUT[kind]: payload}
    raise E.SandboxNotRunning("the process stream ended without an end event")


def _watch_event(kind: bytes | None, payload: bytes) -> dict | None:
    if kind is None:
        return None  # the watched directory is gone
    if kind != wire.JSON:
        raise E.SandboxNotRunning("unexpected frame on a watch stream")
    message = _json(payload)
    if "event" in message:
        event = _shaped(message["event"], "watch event")
        if event.get("entry") is not None:
            _entry(event["entry"])
    return message
