"""`sandbox.files`: read, write, list and watch files inside the sandbox.

Contents travel over envd's `/files` HTTP route (streamed both ways); everything else is a
filesystem RPC. Relative paths resolve against the acting user's home (`/home/user` by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import IO, Any, Literal, TypeVar, Union, overload

import httpx
from google.protobuf.message import Message

from .. import _exceptions as E
from ..protocol import filesystem_pb2 as pb
from . import _fs_tools
from ._commands import AsyncCommands, call_back
from ._http import Envd, translate
from ._models import EntryInfo, FilesystemEvent, WriteInfo

R = TypeVar("R")
CHUNK = 1024 * 1024
WATCH_POLL_INTERVAL = 0.1  # seconds between polls of a watcher that has a callback or an iterator

Data = Union[str, bytes, bytearray, memoryview, IO[Any], Iterable[Union[str, bytes]], AsyncIterable[Union[str, bytes]]]


def _as_bytes(chunk: str | bytes | bytearray | memoryview) -> bytes:
    return chunk.encode() if isinstance(chunk, str) else bytes(chunk)


def _body(data: Data) -> bytes | AsyncIterator[bytes]:
    """Small data as bytes; file objects and iterables as a stream, read off the event loop."""
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        return _as_bytes(data)
    if hasattr(data, "read"):
        async def read_file() -> AsyncIterator[bytes]:
            while chunk := await asyncio.to_thread(data.read, CHUNK):
                yield _as_bytes(chunk)
        return read_file()
    if isinstance(data, AsyncIterable):
        async def read_async() -> AsyncIterator[bytes]:
            async for chunk in data:
                yield _as_bytes(chunk)
        return read_async()
    if isinstance(data, Iterable):
        async def read_iter() -> AsyncIterator[bytes]:
            for chunk in data:
                yield _as_bytes(chunk)
        return read_iter()
    raise E.InvalidArgument(f"cannot write {type(data).__name__}: give str, bytes, a file object or an iterable")


async def _all_bytes(data: Data) -> bytes:
    body = _body(data)
    if isinstance(body, bytes):
        return body
    return b"".join([chunk async for chunk in body])


def _query(path: str, user: str | None) -> dict[str, str]:
    return {"path": path, **({"username": user} if user else {})}


class AsyncWatchHandle:
    """A watch on a directory (`files.watch_dir()`).

    Events are buffered in the sandbox. `get_new_events()` fetches what happened since the last
    call, so an event caused by a finished `files.write()` is always there. With `on_event`, or while
    iterating (`async for event in handle`), the handle polls for you. `stop()` ends the watch.
    """

    def __init__(self, envd: Envd, watcher_id: str, on_event: Callable[[FilesystemEvent], object] | None):
        self._envd = envd
        self._watcher_id = watcher_id
        self._on_event = on_event
        self._lock = asyncio.Lock()
        self._poller = asyncio.get_running_loop().create_task(self._poll()) if on_event else None

    async def _fetch(self, request_timeout: float | None = None) -> list[FilesystemEvent]:
        async with self._lock:  # one fetch at a time keeps events in order
            request = pb.GetWatcherEventsRequest(watcher_id=self._watcher_id)
            response = await self._envd.call(self._envd.filesystem.get_watcher_events, request,
                                             request_timeout=request_timeout)
            events = [e for e in map(FilesystemEvent.from_proto, response.events) if e is not None]
            for event in events:
                await call_back(self._on_event, event)
            return events

    async def _poll(self) -> None:
        while True:
            await self._fetch()
            await asyncio.sleep(WATCH_POLL_INTERVAL)

    async def get_new_events(self, request_timeout: float | None = None) -> list[FilesystemEvent]:
        """Events since the previous call (they also go to `on_event`, if set)."""
        return await self._fetch(request_timeout)

    async def __aiter__(self) -> AsyncIterator[FilesystemEvent]:
        while True:
            for event in await self._fetch():
                yield event
            await asyncio.sleep(WATCH_POLL_INTERVAL)

    async def stop(self, request_timeout: float | None = None) -> None:
        """End the watch. Idempotent."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, E.SandlotError):
                await self._poller
        with contextlib.suppress(E.NotFound):
            await self._envd.call(self._envd.filesystem.remove_watcher,
                                  pb.RemoveWatcherRequest(watcher_id=self._watcher_id), request_timeout=request_timeout)


class AsyncFiles:
    """The sandbox's filesystem (`sandbox.files`).

        await sandbox.files.write("/tmp/app/main.py", "print('hi')")   # parents are created
        assert await sandbox.files.read("/tmp/app/main.py") == "print('hi')"
        names = [e.name for e in await sandbox.files.list("/tmp/app")]
    """

    def __init__(self, envd: Envd, commands: AsyncCommands):
        self._envd = envd
        self._commands = commands

    async def _rpc(self, method: Callable[..., Awaitable[R]], request: Message, user: str | None,
                   request_timeout: float | None) -> R:
        return await self._envd.call(method, request, user=user, not_found=E.FileNotFound,
                                     request_timeout=request_timeout)

    @overload
    async def read(self, path: str, format: Literal["text"] = "text", user: str | None = None,
                   request_timeout: float | None = None) -> str: ...

    @overload
    async def read(self, path: str, format: Literal["bytes"], user: str | None = None,
                   request_timeout: float | None = None) -> bytes: ...

    @overload
    async def read(self, path: str, format: Literal["stream"], user: str | None = None,
                   request_timeout: float | None = None) -> AsyncIterator[bytes]: ...

    @overload
    async def read(self, path: str, format: Literal["text", "bytes", "stream"] = "text", user: str | None = None,
                   request_timeout: float | None = None) -> str | bytes | AsyncIterator[bytes]: ...

    async def read(self, path: str, format: Literal["text", "bytes", "stream"] = "text", user: str | None = None,
                   request_timeout: float | None = None) -> str | bytes | AsyncIterator[bytes]:
        """A file's contents: text (UTF-8, bad bytes replaced), bytes, or an async iterator of
        byte chunks for large files (`request_timeout` then bounds the wait for the first one)."""
        if format not in ("text", "bytes", "stream"):
            raise E.InvalidArgument(f"format must be 'text', 'bytes' or 'stream', not {format!r}")
        if format == "stream":
            stack = contextlib.AsyncExitStack()
            response = await stack.enter_async_context(self._envd.open(
                "GET", "/files", params=_query(path, user), not_found=E.FileNotFound,
                request_timeout=request_timeout))
            return _stream(response, stack)
        response = await self._envd.http("GET", "/files", params=_query(path, user), not_found=E.FileNotFound,
                                         request_timeout=request_timeout)
        return response.content.decode("utf-8", "replace") if format == "text" else response.content

    async def write(self, path: str, data: Data, user: str | None = None,
                    request_timeout: float | None = None) -> WriteInfo:
        """Write a file, creating missing parent directories. `data` may be str, bytes, a file object
        opened in binary mode, or a (sync or async) iterable of chunks; big inputs are streamed."""
        response = await self._envd.http(
            "POST", "/files", params=_query(path, user), content=_body(data),
            headers={"Content-Type": "application/octet-stream"}, request_timeout=request_timeout)
        return WriteInfo.from_json(response.json()[0])

    async def write_files(self, files: Iterable[Mapping[str, Any] | tuple[str, Data]], user: str | None = None,
                          request_timeout: float | None = None) -> list[WriteInfo]:
        """Write several files in one request: `[{"path": ..., "data": ...}, ...]` or `(path, data)` pairs."""
        parts = []
        for entry in files:
            path, data = (entry["path"], entry["data"]) if isinstance(entry, Mapping) else entry
            parts.append(("file", (path, await _all_bytes(data), "application/octet-stream")))
        if not parts:
            return []
        response = await self._envd.http("POST", "/files", params={"username": user} if user else None,
                                         files=parts, request_timeout=request_timeout)
        return [WriteInfo.from_json(d) for d in response.json()]

    async def list(self, path: str, depth: int = 1, user: str | None = None,
                   request_timeout: float | None = None) -> list[EntryInfo]:
        """Entries under a directory, `depth` levels deep (1 = direct children)."""
        if depth < 1:
            raise E.InvalidArgument("depth must be at least 1")
        response = await self._rpc(self._envd.filesystem.list_dir, pb.ListDirRequest(path=path, depth=depth), user,
                                   request_timeout)
        return [e for e in map(EntryInfo.from_proto, response.entries) if e.type is not None]

    async def exists(self, path: str, user: str | None = None, request_timeout: float | None = None) -> bool:
        """Whether `path` exists (a dangling symlink does not)."""
        try:
            await self.get_info(path, user, request_timeout)
        except E.FileNotFound:
            return False
        return True

    async def get_info(self, path: str, user: str | None = None, request_timeout: float | None = None) -> EntryInfo:
        """Stat a path (symlinks are followed; `symlink_target` says where to)."""
        response = await self._rpc(self._envd.filesystem.stat, pb.StatRequest(path=path), user, request_timeout)
        return EntryInfo.from_proto(response.entry)

    async def make_dir(self, path: str, user: str | None = None, request_timeout: float | None = None) -> bool:
        """Create a directory and its parents. False if it already existed."""
        try:
            await self._rpc(self._envd.filesystem.make_dir, pb.MakeDirRequest(path=path), user, request_timeout)
        except E.AlreadyExists:
            return False
        return True

    async def rename(self, old_path: str, new_path: str, user: str | None = None,
                     request_timeout: float | None = None) -> EntryInfo:
        """Move or rename a file or directory."""
        request = pb.MoveRequest(source=old_path, destination=new_path)
        response = await self._rpc(self._envd.filesystem.move, request, user, request_timeout)
        return EntryInfo.from_proto(response.entry)

    async def remove(self, path: str, user: str | None = None, request_timeout: float | None = None) -> None:
        """Remove a file or a directory tree. Removing a missing path is not an error."""
        await self._rpc(self._envd.filesystem.remove, pb.RemoveRequest(path=path), user, request_timeout)

    async def copy(self, source: str, destination: str, user: str | None = None,
                   request_timeout: float | None = None) -> None:
        """Copy a file or directory tree inside the sandbox (`cp -a`)."""
        result = await self._commands.run(f"cp -a -- {shlex.quote(source)} {shlex.quote(destination)}",
                                          user=user, check=False, request_timeout=request_timeout)
        if not result.success:
            message = result.stderr.strip() or f"cp exited with {result.exit_code}"
            raise (E.FileNotFound if "No such file" in message else E.InvalidArgument)(message)

    async def watch_dir(self, path: str, on_event: Callable[[FilesystemEvent], object] | None = None,
                        recursive: bool = False, user: str | None = None,
                        request_timeout: float | None = None) -> AsyncWatchHandle:
        """Watch a directory for changes (see AsyncWatchHandle)."""
        request = pb.CreateWatcherRequest(path=path, recursive=recursive)
        response = await self._rpc(self._envd.filesystem.create_watcher, request, user, request_timeout)
        return AsyncWatchHandle(self._envd, response.watcher_id, on_event)

    # --- for agents: edit, glob, search, tree (client/_fs_tools.py) ---

    async def edit(self, path: str, edits: Iterable[Mapping[str, str] | tuple[str, str]], dry_run: bool = False,
                   user: str | None = None) -> str:
        """Replace text in a file and return the unified diff. Each edit is `{"old_text": ...,
        "new_text": ...}` or an `(old, new)` pair, applied in order; each old text must occur exactly
        once (InvalidArgument otherwise, and nothing is written). `dry_run=True` only returns the diff.

            diff = await sandbox.files.edit("app.py", [("DEBUG = True", "DEBUG = False")])
        """
        text = await self.read(path, user=user)
        new, diff = _fs_tools.apply_edits(path, text, edits)
        if not dry_run and new != text:
            await self.write(path, new, user=user)
        return diff

    async def glob(self, pattern: str, path: str = ".", exclude: Iterable[str] = (), limit: int = 1000,
                   user: str | None = None) -> _fs_tools.WalkResult:
        """Paths under `path` matching a glob, as `GlobMatch`es in `.entries`: `*` and `?` stay within a
        name, `**` spans directories; a pattern without `/` matches names at any depth (`"*.py"`), one
        with `/` the path relative to `path` (`"src/**/test_*.py"`). `exclude` patterns (same rules)
        drop matches and the directories under them. At most `limit` entries (then `.truncated`)."""
        result = await _fs_tools.walk(self._commands, "glob", path, user, limit, pattern=pattern,
                                      exclude=list(exclude))
        return _fs_tools.WalkResult(result.path, [_fs_tools.GlobMatch(**e) for e in result.entries],
                                    result.truncated)

    async def search(self, regex: str, path: str = ".", glob: str | None = None, exclude: Iterable[str] = (),
                     ignore_case: bool = False, limit: int = 1000, max_bytes: int = 10 << 20,
                     user: str | None = None) -> _fs_tools.WalkResult:
        """Lines matching a (Python) regular expression in text files under `path`, as `SearchMatch`es
        in `.entries`; `glob` narrows the files (same rules as `glob()`). Binary files are passed over;
        files larger than `max_bytes` or unreadable are counted in `.skipped`."""
        result = await _fs_tools.walk(self._commands, "search", path, user, limit, regex=regex, pattern=glob,
                                      exclude=list(exclude), ignore_case=ignore_case, max_bytes=max_bytes)
        return _fs_tools.WalkResult(result.path, [_fs_tools.SearchMatch(**e) for e in result.entries],
                                    result.truncated, result.skipped)

    async def tree(self, path: str = ".", depth: int = 3, exclude: Iterable[str] = (), limit: int = 1000,
                   user: str | None = None) -> _fs_tools.WalkResult:
        """The directory tree under `path`, `depth` levels deep, as `TreeNode`s in `.entries` (sorted by
        name; symlinked directories are not entered). At most `limit` nodes (then `.truncated`)."""
        if not isinstance(depth, int) or depth < 1:
            raise E.InvalidArgument(f"depth must be at least 1, got {depth!r}")
        result = await _fs_tools.walk(self._commands, "tree", path, user, limit, depth=depth,
                                      exclude=list(exclude))
        return _fs_tools.WalkResult(result.path, [_fs_tools.TreeNode.from_json(e) for e in result.entries],
                                    result.truncated)


async def _stream(response: httpx.Response, stack: contextlib.AsyncExitStack) -> AsyncIterator[bytes]:
    async with stack:
        with translate(E.FileNotFound):
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk
