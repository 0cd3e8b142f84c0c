"""What every Connect handler needs: the deadline, the requesting user, error translation, codecs."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_codecs
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from . import hot_json
from .auth import basic_user
from .errors import as_connect_errors
from .routing import SandboxHandle

T = TypeVar("T")


def deadline(ctx: RequestContext) -> int | None:
    """Milliseconds left of the client's `Connect-Timeout-Ms`, None without one."""
    left = ctx.timeout_ms
    return None if left is None else max(1, math.ceil(left))


def request_user(ctx: RequestContext, sandbox: SandboxHandle) -> str:
    """The user of the `Authorization: Basic` header, else the sandbox's default user."""
    with as_connect_errors():
        return basic_user(ctx.request_headers.get("authorization")) or sandbox.default_user


async def unary(ctx: RequestContext, call: Awaitable[T]) -> T:
    """Await an agent call within the client's deadline, as Connect errors."""
    left = deadline(ctx)
    try:
        with as_connect_errors():
            async with asyncio.timeout(None if left is None else left / 1000):
                return await call
    except TimeoutError:
        raise ConnectError(Code.DEADLINE_EXCEEDED, "the request's deadline passed") from None


class _RejectingCodec:
    """A codec whose decode failures are `invalid_argument`: connectrpc treats any other exception
    as a server fault (500, logged, connection dropped). Its JSON is hot_json's (the e2b SDKs speak
    Connect JSON): compact, and direct for the messages of every command."""

    def __init__(self, codec: Codec):
        self._codec = codec
        self._json = codec.name() == "json"

    def name(self) -> str:
        return self._codec.name()

    def encode(self, message) -> bytes:
        return hot_json.encode(message) if self._json else self._codec.encode(message)

    def decode(self, data, message_class):
        try:
            return hot_json.decode(data, message_class) if self._json else self._codec.decode(data, message_class)
        except Exception as e:  # noqa: BLE001 - anything a malformed body makes the parser raise
            raise ConnectError(Code.INVALID_ARGUMENT, f"malformed request message: {e}") from None


CODECS = [_RejectingCodec(codec) for codec in google_protobuf_codecs()]
