"""REST routes for sessions: named, stateful shells in a running sandbox (agent/sessions.py runs
them). sandlot's own API, authenticated with the API key like every /sandboxes route.

    POST   /sandboxes/{id}/sessions                 {id?, cwd?, envs?, user?} -> 201 SESSION
    GET    /sandboxes/{id}/sessions                 -> [SESSION]
    GET    /sandboxes/{id}/sessions/{session}       -> SESSION (cwd is the shell's current one)
    DELETE /sandboxes/{id}/sessions/{session}       -> 204 (the shell and its jobs are killed)
    POST   /sandboxes/{id}/sessions/{session}/exec  {cmd, timeout?, stdin? | stdinBase64?, stream?}
           -> {stdout, stderr, exitCode, timedOut, interrupted, shellExited, truncated}, or with
              stream: true, NDJSON lines {"start": {"pid"}} (the command runs: earlier ones of the
              session are done), {"stdout": text} / {"stderr": text} / {"keepalive": {}}, then
              {"end": {...}} (or {"error": {code, message}} if the sandbox went away)

SESSION = {sessionID, user, pid, cwd, envs, createdAt (RFC 3339), busy}. A session starts in `cwd`,
else the sandbox's workspace (/workspace) if it has one, else the user's home. `timeout` is seconds
(default 60, 0 = none): past it the command is interrupted like Ctrl-C (then killed), the shell and
its state stay, and the answer has timedOut: true. A client that leaves (streamed or not) interrupts
its command the same way, or takes it out of the queue. Output past the server's max output size
(SANDLOT_MAX_OUTPUT_BYTES) is dropped from a collected answer, which then says truncated: true.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import json
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar
from urllib.parse import quote

from pydantic import Field
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import _exceptions as E
from .sandbox_views import rfc3339, running
from .bodies import JsonBody, client_left, read_model
from .request_info import note
from .sandbox_text import utf8, utf8_json

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 366 * 24 * 3600.0  # past any sandbox's life; a bound keeps it an integer of milliseconds


class SessionIn(JsonBody):
    id: str | None = None
    cwd: str | None = None
    envs: dict[str, str] | None = None
    user: str | None = None


class ExecIn(JsonBody):
    cmd: str
    timeout: float | None = Field(default=DEFAULT_TIMEOUT, ge=0, le=MAX_TIMEOUT)
    stdin: str | None = None
    stdinBase64: str | None = None
    stream: bool = False


def session_json(info: dict) -> dict:
    """The agent's session info as the API shows it: its text as UTF-8 can hold it (the shell's
    current directory is whatever the sandbox made it, bytes that are not UTF-8 included)."""
    return {"sessionID": utf8(info["id"]), "user": utf8(info["user"]), "pid": info["pid"],
            "cwd": None if info["cwd"] is None else utf8(info["cwd"]), "envs": utf8_json(info["envs"]),
            "createdAt": rfc3339(info["created_at"]), "busy": info["busy"]}


def _end_json(end: dict) -> dict:
    return {"exitCode": end["exit_code"], "timedOut": end["timed_out"], "interrupted": end["interrupted"],
            "shellExited": end["shell_exited"]}


async def create(request: Request) -> Response:
    body = await read_model(request, SessionIn)
    live = running(request)
    cwd = body.cwd or _workspace_path(request, live.id)
    info = session_json(await live.agent.session_create(body.id, user=body.user, cwd=cwd, envs=body.envs))
    note(session=info["sessionID"])
    return JSONResponse(info, status_code=201,
                        headers={"Location": request.url.path + "/" + quote(info["sessionID"], safe="")})


def _workspace_path(request: Request, sandbox_id: str) -> str | None:
    """A sandbox with a workspace starts its sessions there (AgentFense's `pwd` is /workspace)."""
    workspaces = request.app.state.service.runtime.workspaces
    state = workspaces.state(sandbox_id) if workspaces is not None else None
    return state["path"] if state else None


async def list_sessions(request: Request) -> Response:
    return JSONResponse([session_json(i) for i in await running(request).agent.session_list()])


def _session_id(request: Request) -> str:
    sid = request.path_params["session_id"]
    note(session=sid)  # for the audit trail (never the command line)
    return sid


async def get(request: Request) -> Response:
    info = await running(request).agent.session_get(_session_id(request))
    return JSONResponse(session_json(info))


async def delete(request: Request) -> Response:
    await running(request).agent.session_delete(_session_id(request))
    return Response(status_code=204)


async def exec_command(request: Request) -> Response:
    body = await read_model(request, ExecIn)
    live = running(request)
    timeout_ms = int((body.timeout or 0) * 1000)
    stdin = body.stdin.encode() if body.stdin is not None else None
    if body.stdinBase64 is not None:
        try:
            stdin = base64.b64decode(body.stdinBase64, validate=True)
        except ValueError:
            raise E.InvalidArgument("stdinBase64 is not base64") from None
    events = live.agent.session_exec(_session_id(request), body.cmd, stdin=stdin,
                                     timeout_ms=timeout_ms, announce=body.stream)
    if body.stream:
        # errors (no such session) answer with their status
        first = await _unless_client_left(request, _first_event(events))
        return StreamingResponse(_ndjson(first, events), media_type="application/x-ndjson")
    limit = request.app.state.config.max_output_bytes
    return JSONResponse(await _unless_client_left(request, _collected(events, limit)))


async def _unless_client_left(request: Request, work: Awaitable[T]) -> T:
    """`work`, or ClientDisconnect once the client has left (which closes the agent's stream: the
    command is interrupted, or leaves the queue). A command waits for the session's earlier ones
    and may run for ever (timeout 0): a request given up would hold its body as long."""
    task = asyncio.ensure_future(work)
    left = asyncio.ensure_future(client_left(request.receive))
    try:
        await asyncio.wait((task, left), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()  # reading the agent's stream, cancelled: it closes it
            await asyncio.wait((task,))
            raise ClientDisconnect()
        return task.result()
    finally:
        left.cancel()


async def _collected(events: AsyncIterator[dict], limit: int) -> dict:
    """A command's answer, its output past `limit` bytes dropped."""
    parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
    decoders = {k: codecs.getincrementaldecoder("utf-8")(errors="replace") for k in parts}
    size, truncated, end = 0, False, None
    async for event in events:
        for kind in parts:
            if kind in event:
                size += len(event[kind])
                if size > limit:
                    truncated = True
                else:
                    parts[kind].append(decoders[kind].decode(event[kind]))
        end = event.get("end", end)
    if end is None:
        raise E.SandboxNotRunning("the session's command stream broke off")
    for kind, decoder in decoders.items():
        parts[kind].append(decoder.decode(b"", final=True))
    return {"stdout": "".join(parts["stdout"]), "stderr": "".join(parts["stderr"]), **_end_json(end),
            "truncated": truncated}


async def _first_event(events: AsyncIterator[dict]) -> dict | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _ndjson(first: dict | None, events: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    """The events as JSON lines; leaving early closes the agent's stream, which interrupts the
    command."""
    decoders = {k: codecs.getincrementaldecoder("utf-8")(errors="replace") for k in ("stdout", "stderr")}

    async def all_events():
        if first is not None:
            yield first
        async for event in events:
            yield event

    try:
        async for event in all_events():
            if "keepalive" in event or "start" in event:
                yield (json.dumps(event) + "\n").encode()
            if "end" in event:
                tails = {k: d.decode(b"", final=True) for k, d in decoders.items()}
                for kind, tail in tails.items():
                    if tail:
                        yield (json.dumps({kind: tail}) + "\n").encode()
                yield (json.dumps({"end": _end_json(event["end"])}) + "\n").encode()
                return
            for kind, decoder in decoders.items():
                if kind in event and (text := decoder.decode(event[kind])):
                    yield (json.dumps({kind: text}) + "\n").encode()
        raise E.SandboxNotRunning("the session's command stream broke off")
    except E.SandlotError as e:  # the headers are out: the last line says what went wrong
        yield (json.dumps({"error": {"code": e.status, "message": e.message}}) + "\n").encode()
    finally:
        await events.aclose()


def routes() -> list[Route]:
    base = "/sandboxes/{sandbox_id}/sessions"
    one = base + "/{session_id}"
    return [
        Route(base, create, methods=["POST"]),
        Route(base, list_sessions, methods=["GET"]),
        Route(one, get, methods=["GET"]),
        Route(one, delete, methods=["DELETE"]),
        Route(one + "/exec", exec_command, methods=["POST"]),
    ]
