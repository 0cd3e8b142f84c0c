"""Request bodies: bounded per route, and JSON read so that bad input is a 400.

`BodyLimit` wraps a route: a declared Content-Length past the bound is answered 413 at once,
without reading the body; a body without one (chunked) is counted as it arrives and the read fails
with BodyTooLarge once past it, so the server never holds more than the bound. Either way the
connection is closed after the answer (the rest of the body is not read). JSON routes take
SANDLOT_MAX_JSON_BYTES; uploads (POST /files) stream and bound themselves, as do the Connect
services (connectrpc's read_max_bytes, 4 MiB a message).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._exceptions import InvalidArgument, ResourceExhausted


class BodyTooLarge(ResourceExhausted):
    status = 413


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = BodyTooLarge(f"the request body is larger than the limit of {self.max_bytes} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"code": 413, "message": too_large.message}, status_code=413,
                                    headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and received > self.max_bytes:
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, counted, closing)


async def client_left(receive: Receive) -> None:
    """Return once the client has gone (http.disconnect). For a handler that has read its whole
    body, while it waits on something that may never end (a sandbox's answer): only the end comes."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_json(request: Request) -> Any:
    """The request's JSON body ({} when empty). Not JSON, nested past what the parser takes
    (Python's json recurses), or holding a string that is not text: InvalidArgument, never a 500."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
        if b"\\u" in raw:  # only an escape makes a lone surrogate ("\udcff"): UTF-8 cannot hold it
            json.dumps(data, ensure_ascii=False).encode()
        return data
    except UnicodeEncodeError:
        raise InvalidArgument("the request body holds a string that is not text (a lone surrogate)") from None
    except ValueError:
        raise InvalidArgument("the request body is not valid JSON") from None
    except RecursionError:
        raise InvalidArgument("the request body is nested too deeply") from None


async def read_json_object(request: Request) -> dict[str, Any]:
    """read_json, for routes whose body is a JSON object."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidArgument("request body must be a JSON object")
    return data


class JsonBody(BaseModel):
    """A JSON route's body: unknown keys are ignored (E2B's clients send more than sandlot reads)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M]) -> M:
    """The request's JSON object as `model`; what does not fit is InvalidArgument naming the field."""
    data = await read_json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise InvalidArgument(f"invalid {where}: {first['msg']}") from None


def page_limit(query: Mapping[str, str]) -> int:
    """A list route's `limit` query value: 1 to 100, 100 when absent (E2B's page size)."""
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise InvalidArgument("limit must be an integer") from None
    if not 1 <= limit <= 100:
        raise InvalidArgument("limit must be between 1 and 100")
    return limit
