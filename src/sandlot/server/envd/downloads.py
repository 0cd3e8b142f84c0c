"""The envd HTTP routes besides uploads: /health, /envs and the /files download (docs/e2b.md §3.8).

Downloads stream from the agent: gzipped on the fly when the client accepts gzip (as real envd
does; the SDKs decode it), or one byte range (206) for a single `Range: bytes=a-b`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..._exceptions import InvalidArgument, SandboxNotRunning, SandlotError
from .errors import error_response
from .routing import current_sandbox

# Level 1: on loopback the CPU spent compressing matters more than the bytes saved.
GZIP_LEVEL = 1
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
log = logging.getLogger("sandlot.files")


class Download(StreamingResponse):
    """A file's bytes from the agent. If they break off once sent (the file became shorter than
    its promised length or unreadable, the sandbox went), the response ends where it stands,
    without its last chunk: the client sees a cut-off body, never one that looks complete.

    `length` is the Content-Length, which the agent promised: a forged agent may send more or
    less. Its body is held to it (uvicorn would raise mid-response), the chunk that completes it
    sent only once the stream ends, so that more after it still cuts the body short."""

    def __init__(self, body: AsyncIterator[bytes], sandbox_id: str, length: int | None = None, **kwargs):
        if length is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Content-Length": str(length)}
        super().__init__(body, media_type="application/octet-stream", **kwargs)
        self.sandbox_id, self.length = sandbox_id, length

    async def stream_response(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        promised, sent, last = self.length, 0, b""
        try:
            async for chunk in self.body_iterator:
                if promised is not None and sent + len(chunk) > promised:
                    raise SandboxNotRunning(f"the agent sent more than the {promised} bytes it promised")
                sent += len(chunk)
                if sent == promised:
                    last = chunk
                elif chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if promised is not None and sent < promised:
                raise SandboxNotRunning(f"the agent sent {sent} of the {promised} bytes it promised")
        except SandlotError as e:
            log.warning("sandbox %s: a download broke off: %s", self.sandbox_id, e)
            return
        await send({"type": "http.response.body", "body": last, "more_body": False})


async def health(request: Request) -> Response:
    return Response(status_code=204)  # the gate already answered 502 for a sandbox that is not running


async def envs(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        return JSONResponse(await sandbox.agent.env())
    except SandlotError as e:
        return error_response(e, sandbox.id)


async def download(request: Request) -> Response:
    sandbox = current_sandbox()
    path = request.query_params.get("path")
    if not path:
        return error_response(InvalidArgument("the path query parameter is required"))
    user = request.query_params.get("username") or sandbox.default_user
    stream = sandbox.agent.read(path, user)
    try:
        opened = await anext(stream)  # the agent refuses directories (400) and missing paths (404)
    except SandlotError as e:
        return error_response(e, sandbox.id)
    entry, length = opened["entry"], opened.get("length")
    headers = {"Content-Disposition": content_disposition(entry["name"]), "Accept-Ranges": "bytes"}
    size = entry["size"]
    span = _byte_range(request.headers.get("range"), size)
    if span == "unsatisfiable":
        await stream.aclose()
        return JSONResponse({"code": 416, "message": f"the range is outside the file ({size} bytes)"},
                            status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if span is not None:
        first, last = span
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Download(_slice(stream, first, last + 1), sandbox.id, last - first + 1, status_code=206, headers=headers)
    headers["Vary"] = "Accept-Encoding"
    body: AsyncIterator[bytes] = stream
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        try:
            first = await anext(stream, b"")
        except SandlotError as e:
            return error_response(e, sandbox.id)
        body = _chain(first, stream)
        # Accept-Encoding is advisory: data that does not shrink (media, archives) is sent as is
        # rather than spending ~20 ms of CPU per MiB for nothing.
        if _compressible(first):
            headers["Content-Encoding"] = "gzip"
            body = _gzip(body)
    # a sized body is sent as it comes; a chunked one was copied once more per chunk to frame it,
    # and the SDKs' readers spent ~20% more CPU on it
    return Download(body, sandbox.id, None if "Content-Encoding" in headers else length, headers=headers)


def content_disposition(name: str) -> str:
    """`inline` with the file's name: exact in `filename*` (RFC 6266: percent-encoded UTF-8), and a
    printable-ASCII stand-in in `filename` for old clients. A name may hold any byte but '/' and
    NUL, a CR or LF among them: sent raw in a header it would end the header (h11 refuses to send
    it, and the download failed)."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='', errors='surrogateescape')}"


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) of a single `bytes=a-b`, `bytes=a-` or `bytes=-n`; "unsatisfiable"; or None
    (no header, or one this does not serve, such as several ranges: the whole file is sent)."""
    m = _RANGE.fullmatch((header or "").strip())
    if not m or m.groups() == ("", ""):
        return None
    start, end = m.groups()
    if start == "":  # the last n bytes
        first, last = max(0, size - int(end)), size - 1
        return (first, last) if int(end) > 0 and size > 0 else "unsatisfiable"
    first, last = int(start), min(int(end), size - 1) if end else size - 1
    if end and int(end) < first:
        return None  # invalid: ignored, as RFC 9110 says
    return (first, last) if first < size else "unsatisfiable"


async def _slice(stream: AsyncIterator[bytes], start: int, stop: int) -> AsyncIterator[bytes]:
    """Bytes [start, stop) of the stream; the agent reads from the beginning, so the head is
    skipped here, and the read is ended once `stop` is reached."""
    offset = 0
    try:
        async for chunk in stream:
            lo, hi = max(start - offset, 0), min(stop - offset, len(chunk))
            offset += len(chunk)
            if lo < hi:
                yield chunk[lo:hi]
            if offset >= stop:
                break
    finally:
        await stream.aclose()


def _compressible(head: bytes) -> bool:
    sample = head[:16384]
    return bool(sample) and len(zlib.compress(sample, GZIP_LEVEL)) < 0.9 * len(sample)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


async def _gzip(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    try:
        async for chunk in stream:
            # a large chunk is compressed off the event loop (zlib releases the GIL)
            out = await asyncio.to_thread(deflate.compress, chunk) if len(chunk) > 65536 else deflate.compress(chunk)
            if out:
                yield out
        yield deflate.flush()
    finally:
        await stream.aclose()
