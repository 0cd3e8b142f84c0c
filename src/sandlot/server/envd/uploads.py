"""The /files upload API (docs/e2b.md §3.9).

Uploads stream: each multipart file part (or the octet-stream body) goes to the agent chunk by
chunk as it arrives, gunzipped on the fly when `Content-Encoding: gzip`, and the upload fails with
413 once it passes the configured maximum.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..._exceptions import InvalidArgument, ResourceExhausted, SandlotError
from ..request_info import note
from .errors import error_response
from .routing import SandboxHandle, current_sandbox
from .watchers import Watchers

METADATA_PREFIX = "x-metadata-"
CHUNK = 256 * 1024
# Files of one upload whose commit may wait for the end of the body (see _write_together).
HELD_FILES_MAX = 64
# How browsers (the HTML standard) and httpx (every e2b SDK) write a `"`, CR, LF and the other
# control characters of a multipart filename; `\` they escape as a quoted pair, which the parser
# undoes. A name that holds such a sequence literally goes in the `path` query parameter instead.
_FORM_ESCAPE = re.compile(r"%(22|[01][0-9A-Fa-f])")


class UploadTooLarge(ResourceExhausted):
    status = 413


class Uploads:
    """POST /files: one JSON entry per written file, in request order."""

    def __init__(self, watchers: Watchers, max_bytes: int):
        self.watchers, self.max_bytes = watchers, max_bytes

    async def post(self, request: Request) -> Response:
        sandbox = current_sandbox()
        try:
            return JSONResponse(await self._upload(request, sandbox))
        except SandlotError as e:
            return error_response(e, sandbox.id)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is left to read it

    async def _upload(self, request: Request, sandbox: SandboxHandle) -> list[dict]:
        query = request.query_params
        user = query.get("username") or sandbox.default_user
        metadata = {k[len(METADATA_PREFIX):]: v for k, v in request.headers.items() if k.startswith(METADATA_PREFIX)}
        if "" in metadata:
            raise InvalidArgument("metadata keys must not be empty")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise self._too_large()
        # Checked before anything is written: the agent truncates the destination when it opens it.
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity"):
            raise InvalidArgument(f"unsupported Content-Encoding '{encoding}': use gzip or none")
        body = self._body(request, gzipped=encoding == "gzip")
        content_type, options = parse_options_header(request.headers.get("content-type"))
        if content_type == b"multipart/form-data":
            if not options.get(b"boundary"):
                raise InvalidArgument("the multipart body has no boundary")
            files = MultipartFiles(body, options[b"boundary"]).files(query.get("path"))
        elif content_type == b"application/octet-stream":
            if not query.get("path"):
                raise InvalidArgument("an octet-stream upload needs the path query parameter")
            files = _single(query["path"], body)
        else:
            raise InvalidArgument("the body must be multipart/form-data or application/octet-stream")
        if content_type == b"multipart/form-data" and not (length.isdigit() and encoding == "identity"):
            entries = await self._write_together(sandbox, user, metadata or None, files)
        else:  # a single file, or files whose total is known to fit: each is committed as it ends
            entries = []
            async for path, chunks in files:
                marks = self.watchers.marks(sandbox)
                entries.append(await sandbox.agent.write(path, user, chunks, metadata or None))
                await self.watchers.settle(marks, entries[-1]["path"])
        if not entries:
            raise InvalidArgument("the request contains no file")
        note(**({"path": entries[0]["path"]} if len(entries) == 1 else {"paths": [e["path"] for e in entries]}))
        return [_written(entry) for entry in entries]

    async def _write_together(self, sandbox: SandboxHandle, user: str, metadata: dict | None,
                              files: AsyncIterator[tuple[str, AsyncIterator[bytes]]]) -> list[dict]:
        """Files of a multipart body that may still pass the limit (no Content-Length, or gzipped):
        each file's data goes to the agent as it arrives, but the agent commits it only once the
        whole body is in. A 413 (or a malformed or broken-off body) on a later file then leaves none
        written: the agent drops what it holds (new files removed, replaced ones untouched). A file
        the agent refuses (a directory in the way) shows only when committed, after those before it."""
        held: list[tuple[asyncio.Task, asyncio.Event]] = []
        entries = []
        try:
            async for path, chunks in files:
                drained, commit = asyncio.Event(), asyncio.Event()
                task = asyncio.create_task(sandbox.agent.write(path, user, _held(chunks, drained, commit), metadata))
                held.append((task, commit))
                # the part must be read to its end (by the task) before the parser moves on
                waiter = asyncio.create_task(drained.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if task.done():
                    task.result()  # the agent refused the file, or its data failed (413, malformed)
                while len(held) > HELD_FILES_MAX:  # bound the connections held open: commit the oldest
                    entries.append(await self._commit(sandbox, *held.pop(0)))
            while held:
                entries.append(await self._commit(sandbox, *held.pop(0)))
        finally:
            for task, _ in held:
                task.cancel()  # the agent sees its connection close without the end: nothing is kept
            await asyncio.gather(*(task for task, _ in held), return_exceptions=True)
        return entries

    async def _commit(self, sandbox: SandboxHandle, task: asyncio.Task, commit: asyncio.Event) -> dict:
        marks = self.watchers.marks(sandbox)
        commit.set()
        entry = await task
        await self.watchers.settle(marks, entry["path"])
        return entry

    async def _body(self, request: Request, gzipped: bool) -> AsyncIterator[bytes]:
        """The request body, decoded, failing once it passes the size limit."""
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        total = 0
        async for raw in request.stream():
            for chunk in _gunzip(inflate, raw) if inflate else (raw,):
                total += len(chunk)
                if total > self.max_bytes:
                    raise self._too_large()
                if chunk:
                    yield chunk
        if inflate is not None and not inflate.eof:
            raise InvalidArgument("the gzip body is truncated")

    def _too_large(self) -> UploadTooLarge:
        return UploadTooLarge(f"the upload is larger than the limit of {self.max_bytes} bytes")


def _written(entry: dict) -> dict:
    info = {"name": entry["name"], "type": "file", "path": entry["path"]}
    if entry.get("metadata"):
        info["metadata"] = entry["metadata"]
    return info


async def _held(chunks: AsyncIterator[bytes], drained: asyncio.Event, commit: asyncio.Event) -> AsyncIterator[bytes]:
    """A file's data, then a wait for `commit` before it ends (the agent writes the file for good
    when its data ends)."""
    async for chunk in chunks:
        yield chunk
    drained.set()
    await commit.wait()


def _gunzip(inflate, data: bytes) -> Iterator[bytes]:
    """Inflate in bounded pieces: a small gzip chunk may expand a thousandfold."""
    try:
        while data:
            yield inflate.decompress(data, CHUNK)
            data = inflate.unconsumed_tail
    except zlib.error as e:
        raise InvalidArgument(f"the body is not valid gzip: {e}") from None


async def _single(path: str, body: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    yield path, body


class MultipartFiles:
    """Pulls `file` parts out of a multipart/form-data body as it streams in.

    python-multipart is a push parser: its callbacks queue events, and the async iterators here
    feed it more of the body whenever the queue runs dry.
    """

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes):
        self._body = body
        self._events: deque[tuple[str, object]] = deque()
        self._field, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add_field(data[start:end]),
            "on_header_value": lambda data, start, end: self._add_value(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self._events.append(("part", self._headers)),
            "on_part_data": lambda data, start, end: self._events.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self._events.append(("part_end", None)),
            "on_end": lambda: self._events.append(("end", None)),
        })

    async def files(self, path: str | None) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """(destination, data) per `file` part: the filename is the path unless `path` is given
        (then a part without a filename is taken as well, as E2B's envd does)."""
        count = 0
        while True:
            kind, headers = await self._next()
            if kind == "end":
                return
            if kind != "part":
                continue
            name, filename = _disposition(headers)
            data = self._data()
            # a `file` part; E2B takes one without a filename too when the query gives the path
            if name == "file" and (filename is not None or path):
                count += 1
                if path and count > 1:
                    raise InvalidArgument("several files cannot be uploaded to one path")
                yield path or filename, data
            async for _ in data:  # skip what the consumer left, and non-file fields
                pass

    async def _data(self) -> AsyncIterator[bytes]:
        while True:
            kind, data = await self._next()
            if kind != "data":
                return
            yield data

    async def _next(self) -> tuple[str, object]:
        while not self._events:
            chunk = await anext(self._body, None)
            try:
                if chunk is None:
                    self._parser.finalize()
                    if not self._events:
                        raise InvalidArgument("the multipart body ended early")
                else:
                    self._parser.write(chunk)
            except FormParserError as e:
                raise InvalidArgument(f"malformed multipart body: {e}") from None
        return self._events.popleft()

    def _part_begin(self) -> None:
        self._headers = {}

    def _add_field(self, data: bytes) -> None:
        self._field += data

    def _add_value(self, data: bytes) -> None:
        self._value += data

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""


def _disposition(headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    """The form field name and filename of a part (httpx sends them UTF-8 encoded, _FORM_ESCAPE)."""
    _, options = parse_options_header(headers.get(b"content-disposition", b"").decode("latin-1"))
    name, filename = options.get(b"name"), options.get(b"filename")
    return (None if name is None else name.decode("utf-8", "replace"),
            None if filename is None else _FORM_ESCAPE.sub(lambda m: chr(int(m[1], 16)),
                                                           filename.decode("utf-8", "replace")))
