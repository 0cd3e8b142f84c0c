"""The code interpreter's HTTP API (docs/e2b.md §4): POST /execute, /contexts and GET /health.

E2B serves these on port 49999 inside the sandbox; with E2B_SANDBOX_URL the SDK sends them to the
same base URL as envd, routed by `E2b-Sandbox-Id` (and `E2b-Sandbox-Port: 49999`, which tells this
/health from envd's). Errors are plain text, as the reference server's (the SDK shows the body). /execute streams newline-delimited JSON and always ends with
end_of_execution; a sandbox killed or paused mid-run breaks the stream off (no end), which the SDK
reports as "the sandbox was killed".
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..._exceptions import InvalidArgument, NotFound, SandboxNotRunning, SandlotError
from ..bodies import client_left, read_json
from ..sandbox_text import utf8_json
from .errors import error_response
from .routing import SandboxHandle, current_sandbox

T = TypeVar("T")

KEEPALIVE_S = 5.0  # the reference server's KEEPALIVE_INTERVAL
PORT = "49999"
PORT_CLOSED = "The sandbox is running but port is not open"  # E2B's proxy, for a port nothing serves
NO_KERNELS = ("this sandbox's template has no code interpreter: create the sandbox from the "
              "'code-interpreter' template")


class BrokenOff(ConnectionAbortedError):
    """Raised out of an /execute body to drop the connection mid-body: the sandbox stopped, which
    the SDK learns from the broken stream. Expected, so not logged as a server error."""


def _error(e: SandlotError, sandbox: SandboxHandle | None = None) -> Response:
    if isinstance(e, SandboxNotRunning):
        return error_response(e, sandbox.id if sandbox else "")  # the proxy's 502, as on every route
    return PlainTextResponse(e.message, status_code=e.status)


async def _while_running(sandbox: SandboxHandle, work: Awaitable[T], request: Request) -> T:
    """`work`, unless the sandbox is killed or paused first: then SandboxNotRunning, not whatever
    the dying interpreter answered (the Event is taken now: pause() swaps in a new one). Nor once
    the client has left (ClientDisconnect): the interpreter is the sandbox's, and one that never
    answers would otherwise hold every request given up, its body included, as long as it runs."""
    closed = asyncio.ensure_future(sandbox.closed.wait())
    left = asyncio.ensure_future(client_left(request.receive))  # the body is read: only the end comes
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait((task, closed, left), return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            task.cancel()
            raise SandboxNotRunning(f"sandbox {sandbox.id} stopped running", sandbox_id=sandbox.id)
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))  # a cancelled run sends its cancel before the request ends
            raise ClientDisconnect()
        return task.result()
    finally:
        closed.cancel()
        left.cancel()


async def _body(request: Request) -> dict:
    body = await read_json(request)  # bounded by the route (bodies.BodyLimit); too deep is a 400
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _session(sandbox: SandboxHandle):
    if sandbox.kernels is None:
        raise NotFound(NO_KERNELS)
    return sandbox.kernels


def _optional(body: dict, key: str, kind: type | tuple[type, ...]):
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = {"str": "string", "dict": "JSON object", "int": "number", "float": "number"}
        raise InvalidArgument(f"'{key}' must be a {' or '.join(dict.fromkeys(names.get(k.__name__, k.__name__) for k in kinds))}")
    return value


def _names(body: dict, key: str, values: type | tuple = object) -> dict:
    """A {name: value} object whose names are identifiers: environment variables and variables of
    a context's namespace (python and bash accept nothing else)."""
    mapping = _optional(body, key, dict) or {}
    for name, value in mapping.items():
        if not name.isidentifier() or not name.isascii():
            raise InvalidArgument(f"'{key}': {name!r} is not a valid variable name")
        if not isinstance(value, values):
            raise InvalidArgument(f"'{key}': the value of {name} must be a string")
    return mapping


def health_by_port(envd_health: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """GET /health: the code interpreter's for port 49999, envd's for any other."""

    async def health(request: Request) -> Response:
        if request.headers.get("e2b-sandbox-port") == PORT:
            return interpreter_health()
        return await envd_health(request)

    return health


def interpreter_health() -> Response:
    """200 "OK" as E2B's interpreter answers once it serves; while it does not (starting, started
    again after it was killed, or a template without one) E2B's proxy answer for a closed port."""
    sandbox = current_sandbox()
    if sandbox.kernels is None or not sandbox.kernels.serving():
        return JSONResponse({"sandboxId": sandbox.id, "message": PORT_CLOSED, "port": int(PORT), "code": 502},
                            status_code=502)
    return JSONResponse("OK")


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
        if not math.isfinite(timeout):
            raise InvalidArgument("'timeout' must be a finite number of seconds")
        args = {"code": code, "envs": _names(body, "env_vars", str), "timeout": max(0, timeout)}
        args.update({"context": context} if context else {"language": language or "python"})
        batches = _session(sandbox).execute(**args)
        first = await _while_running(sandbox, anext(batches), request)  # "accepted", or 4xx for a bad context
    except SandlotError as e:
        return _error(e, sandbox)
    return NDJSONStream(first, batches, sandbox)


class NDJSONStream:
    """The /execute response. Lines that arrive together go out in one chunk, and the last ones
    with the end of the body in one write: a `1+1` costs the client as few wake-ups as it can.
    Quiet for KEEPALIVE_S: a keepalive line. The client gone: the run is interrupted. The sandbox
    gone: the body is broken off."""

    def __init__(self, first: list[dict], batches: AsyncIterator[list[dict]], sandbox: SandboxHandle):
        self.first, self.batches, self.sandbox = first, batches, sandbox

    async def __call__(self, scope, receive, send) -> None:
        stops = [asyncio.ensure_future(self.sandbox.closed.wait()), asyncio.ensure_future(client_left(receive))]
        pending: asyncio.Future | None = None
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/x-ndjson")]})
            batch = [line for line in self.first if line.get("type") != "accepted"]
            while True:
                if batch:
                    last = batch[-1].get("type") == "end_of_execution"
                    await send({"type": "http.response.body", "body": b"".join(map(_line, batch)),
                                "more_body": not last})
                    if last:
                        return
                if pending is None:
                    pending = asyncio.ensure_future(anext(self.batches))
                await asyncio.wait((pending, *stops), timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                if pending.done():
                    step, pending = pending, None
                    batch = step.result()
                elif stops[1].done():
                    return  # the client left; closing the batches below interrupts the run
                elif stops[0].done():
                    # broken off mid-body: the SDK sees the connection drop and asks if the sandbox lives
                    raise BrokenOff(f"sandbox {self.sandbox.id} stopped during /execute")
                else:
                    batch = [{"type": "keepalive"}]
        finally:
            for f in stops:
                f.cancel()
            if pending is not None:
                pending.cancel()
                await asyncio.wait((pending,))
            await self.batches.aclose()  # interrupts the run if it is still going


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def create_context(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        body = await _body(request)
        reply = await _while_running(sandbox, _session(sandbox).call(
            "create", language=_optional(body, "language", str) or "python",
            cwd=_optional(body, "cwd", str) or None, envs=_names(body, "envs", str),
            variables=_names(body, "variables")), request)
        return _answer(reply, "context", dict)
    except SandlotError as e:
        return _error(e, sandbox)


async def list_contexts(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        reply = await _while_running(sandbox, _session(sandbox).call("list"), request)
        return _answer(reply, "contexts", list)
    except SandlotError as e:
        return _error(e, sandbox)


async def restart_context(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        restart = _session(sandbox).call("restart", context=request.path_params["context_id"])
        reply = await _while_running(sandbox, restart, request)
        return _answer(reply, "context", dict)
    except SandlotError as e:
        return _error(e, sandbox)


def _answer(reply: dict, key: str, kind: type) -> Response:
    """The driver's `reply[key]` as the response. The driver runs in the sandbox, whose root may
    forge its lines: one without it is a broken protocol (502), not a KeyError (500)."""
    value = reply.get(key)
    if not isinstance(value, kind):
        raise SandboxNotRunning(f"the code interpreter broke its protocol: its answer has no {key!r}")
    try:
        return JSONResponse(utf8_json(value))  # a forged driver's text may hold lone surrogates
    except RecursionError:  # parsed where the stack was shallow, it may not render here
        raise SandboxNotRunning("the code interpreter broke its protocol: its answer is nested too deeply") from None


async def remove_context(request: Request) -> Response:
    sandbox = current_sandbox()
    try:
        await _while_running(sandbox, _session(sandbox).call("remove", context=request.path_params["context_id"]),
                             request)
    except SandlotError as e:
        return _error(e, sandbox)
    return Response(status_code=200)
