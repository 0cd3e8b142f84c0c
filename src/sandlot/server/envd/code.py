"""The code interpreter's HTTP API (e2b-protocol.md §5): POST /execute and /contexts.

E2B serves these on port 49999 inside the sandbox; with E2B_SANDBOX_URL the SDK sends them to the
same base URL as envd, routed by `E2b-Sandbox-Id`. Errors are plain text, as the reference server's
(the SDK shows the body). /execute streams newline-delimited JSON and always ends with
end_of_execution; a sandbox killed or paused mid-run breaks the stream off (no end), which the SDK
reports as "the sandbox was killed".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..._exceptions import InvalidArgument, NotFound, SandlotError
from .routing import SandboxHandle, current_sandbox

KEEPALIVE_S = 5.0  # the reference server's KEEPALIVE_INTERVAL
NO_KERNELS = ("this sandbox's template has no code interpreter: create the sandbox from the "
              "'code-interpreter' template")


def _error(e: SandlotError) -> Response:
    return PlainTextResponse(e.message, status_code=e.status)


async def _body(request: Request) -> dict:
    try:
        body = await request.json() if await request.body() else {}
    except ValueError:
        raise InvalidArgument("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _session(sandbox: SandboxHandle):
    if sandbox.kernels is None:
        raise NotFound(NO_KERNELS)
    return sandbox.kernels


def _optional(body: dict, key: str, kind: type):
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidArgument(f"'{key}' must be a {kind.__name__}")
    return value


def _envs(body: dict, key: str) -> dict[str, str]:
    envs = _optional(body, key, dict) or {}
    if not all(isinstance(k, str) and k and "=" not in k and "\0" not in k and isinstance(v, str)
               for k, v in envs.items()):
        raise InvalidArgument(f"'{key}' must map variable names to strings")
    return envs


async def execute(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        body = await _body(request)
        code = body.get("code")
        if not isinstance(code, str):
            raise InvalidArgument("'code' must be a string")
        context, language = _optional(body, "context_id", str), _optional(body, "language", str)
        if context and language:
            raise InvalidArgument("give a context_id or a language, not both")
        timeout = _optional(body, "timeout", (int, float)) or 0  # sandlot's SDK: a server-side deadline
        args = {"code": code, "envs": _envs(body, "env_vars"), "timeout": max(0, timeout)}
        args.update({"context": context} if context else {"language": language or "python"})
        lines = _session(sandbox).execute(**args)
        first = await _next(lines)  # "accepted" or an error: bad contexts answer 4xx, not a stream
    except SandlotError as e:
        return _error(e)
    return StreamingResponse(_stream(first, lines, sandbox), media_type="application/x-ndjson")


async def _next(lines: AsyncIterator[dict]) -> dict | None:
    try:
        return await anext(lines)
    except StopAsyncIteration:
        return None


async def _stream(first: dict | None, lines: AsyncIterator[dict], sandbox: SandboxHandle) -> AsyncIterator[bytes]:
    """The NDJSON body: lines as they come, keepalives while quiet, end_of_execution last. A closed
    sandbox raises, which breaks the response off mid-stream."""
    closed = asyncio.ensure_future(sandbox.closed.wait())
    pending: asyncio.Future | None = None
    try:
        if first is not None and first.get("type") != "accepted":
            yield _line(first)
        elif first is None:
            yield _line({"type": "end_of_execution"})
            return
        while True:
            if pending is None:
                pending = asyncio.ensure_future(_next(lines))
            await asyncio.wait((pending, closed), timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
            if pending.done():
                try:
                    item = pending.result()
                except SandlotError as e:
                    item = {"type": "error", "name": "SandboxError", "value": e.message, "traceback": ""}
                    yield _line(item)
                    item = None
                pending = None
                if item is None:
                    yield _line({"type": "end_of_execution"})
                    return
                yield _line(item)
            elif closed.done():
                raise ConnectionAbortedError(f"sandbox {sandbox.id} stopped running")
            else:
                yield _line({"type": "keepalive"})
    finally:
        closed.cancel()
        if pending is not None:
            pending.cancel()
            await asyncio.wait((pending,))
        await lines.aclose()  # interrupts the run if it is still going (the client left)


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def create_context(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        body = await _body(request)
        variables = _optional(body, "variables", dict) or {}
        reply = await _session(sandbox).call(
            "create", language=_optional(body, "language", str) or "python",
            cwd=_optional(body, "cwd", str) or None, envs=_envs(body, "envs"), variables=variables)
    except SandlotError as e:
        return _error(e)
    return JSONResponse(reply["context"])


async def list_contexts(request: Request) -> Response:
    try:
        reply = await _session(current_sandbox()).call("list")
    except SandlotError as e:
        return _error(e)
    return JSONResponse(reply["contexts"])


async def restart_context(request: Request) -> Response:
    try:
        reply = await _session(current_sandbox()).call("restart", context=request.path_params["context_id"])
    except SandlotError as e:
        return _error(e)
    return JSONResponse(reply["context"])


async def remove_context(request: Request) -> Response:
    try:
        await _session(current_sandbox()).call("remove", context=request.path_params["context_id"])
    except SandlotError as e:
        return _error(e)
    return Response(status_code=200)
