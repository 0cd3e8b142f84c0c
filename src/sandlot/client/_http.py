"""Transport to a sandlot server, and the SDK's one error boundary.

All traffic goes to one origin: the server answers every front door on one port (docs/e2b.md §1.2).

    control plane   REST + JSON, X-API-KEY                                  Transport.api()
    envd HTTP       /files, /health; X-Access-Token + E2b-Sandbox-Id        Envd.http(), Envd.open()
    envd RPC        Connect, JSON codec, no compression, over pyqwest      Envd.call(), Envd.stream()

Errors of httpx, pyqwest and connectrpc become sandlot exceptions in `translate()` and nowhere else;
every I/O path above runs inside it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import ssl
import threading
from pathlib import Path
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx
import pyqwest
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_json_codec
from connectrpc.errors import ConnectError
from google.protobuf.message import Message

from .. import _exceptions as E
from ..protocol.filesystem_connect import FilesystemClient
from ..protocol.process_connect import ProcessClient
from ._config import CA_FILE_ENV, ConnectionConfig

try:
    USER_AGENT = f"sandlot-python/{version('sandlot')}"
except PackageNotFoundError:  # running from a source tree
    USER_AGENT = "sandlot-python"
R = TypeVar("R")
ENVD_PORT = "49983"  # E2B routes envd traffic by this port header; sandlot checks it the same way

_BY_STATUS: dict[int, type[E.SandlotError]] = {
    400: E.InvalidArgument, 401: E.AuthenticationError, 403: E.PermissionDenied, 404: E.NotFound,
    409: E.AlreadyExists, 413: E.ResourceExhausted, 429: E.ResourceExhausted, 501: E.Unsupported,
    502: E.SandboxNotRunning, 504: E.TimeoutError, 507: E.ResourceExhausted,
}


def error_for_status(status: int, message: str, not_found: type[E.NotFound] = E.NotFound) -> E.SandlotError:
    """The sandlot error for an HTTP error status; `not_found` refines 404 (e.g. FileNotFound)."""
    cls = _BY_STATUS.get(status, E.SandlotError)
    return (not_found if cls is E.NotFound else cls)(message, status=status)


def error_for_answer(status: int, body: bytes, not_found: type[E.NotFound] = E.NotFound) -> E.SandlotError:
    """The sandlot error for an error answer: its JSON `message`, else its text (proxies answer in
    plain text). A paused sandbox's 502 carries `state` (the message is worded for the e2b SDK); a
    create's 503 carries the progress of the template build it waits for."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return error_for_status(status, body.decode("utf-8", "replace").strip()[:1000] or f"HTTP {status}",
                                not_found)
    if status == 502 and data.get("state") == "paused":
        sid = str(data.get("sandboxId", ""))
        return E.SandboxNotRunning(f"sandbox {sid} is paused: resume it with sandbox.resume() or "
                                   f"Sandbox.connect({sid!r})", status=status, paused=True, sandbox_id=sid)
    message = data.get("message")
    message = message if isinstance(message, str) else f"HTTP {status}"
    if status == 503 and isinstance(data.get("template"), str):  # a create waiting for a template build
        return E.TemplateBuilding(message, status=status, template=data["template"],
                                  progress=int(data.get("progress") or 0), step=str(data.get("step") or ""))
    return error_for_status(status, message, not_found)


class _PlainHTTPError(ConnectError):
    """A non-Connect error answer on an RPC route, with its HTTP status and body kept."""

    def __init__(self, status: int, body: bytes):
        super().__init__(Code.UNKNOWN, body.decode("utf-8", "replace")[:1000])
        self.status, self.body = status, body


def _from_connect(e: ConnectError, not_found: type[E.NotFound]) -> E.SandlotError:
    if e.code is Code.UNAVAILABLE:  # the stream broke or the server went away; callers may probe /health
        return E.SandlotError(f"lost the connection to the sandbox: {e.message}", lost=True)
    err = E.from_code(e.code.value, e.message)
    return not_found(e.message) if type(err) is E.NotFound else err


def _cert_error(e: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under an httpx error, if that is what it was."""
    seen: BaseException | None = e
    for _ in range(8):  # httpx -> httpcore -> ssl is three deep; a chain may also loop
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def translate(not_found: type[E.NotFound] = E.NotFound) -> Iterator[None]:
    """Run a block of I/O; let only sandlot exceptions (and cancellation) out of it."""
    try:
        yield
    except _PlainHTTPError as e:
        raise error_for_answer(e.status, e.body, not_found) from e
    except ConnectError as e:
        # connectrpc turns task cancellation into Code.CANCELED; asyncio needs it back as it was
        if e.code is Code.CANCELED and isinstance(e.__cause__, asyncio.CancelledError):
            raise e.__cause__ from None
        raise _from_connect(e, not_found) from e
    except httpx.TimeoutException as e:
        raise E.TimeoutError(f"the sandlot server did not answer in time ({type(e).__name__})") from e
    except httpx.TransportError as e:
        if untrusted := _cert_error(e):
            raise E.SandlotError(f"the sandlot server's TLS certificate is not trusted ({untrusted.verify_message}): "
                                 f"pass ca_file= or set ${CA_FILE_ENV} to its CA's PEM file (`sandlot ca` on "
                                 "the server's machine, or its GET /ca.pem)") from e
        raise E.SandlotError(f"cannot reach the sandlot server: {e or type(e).__name__}", lost=True) from e
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as e:
        raise E.SandlotError(f"HTTP error: {e}") from e


class _PlainErrorTransport:
    """Raises non-Connect error answers (a 502 "sandbox was not found", a 401 from the token check)
    with their status; connectrpc would fold them all into `unavailable`."""

    def __init__(self, inner: pyqwest.Transport):
        self._inner = inner

    async def execute(self, request: pyqwest.Request) -> pyqwest.Response:
        response = await self._inner.execute(request)
        if response.status < 400:
            return response
        body = bytearray()
        async for chunk in response.content:
            body.extend(chunk)
        try:
            code = json.loads(body).get("code")
            Code(code)
        except (ValueError, AttributeError, TypeError):
            raise _PlainHTTPError(response.status, bytes(body)) from None
        # a real Connect error: hand it back to connectrpc, body restored
        return pyqwest.Response(status=response.status, headers=response.headers, content=bytes(body))


_rpc_lock = threading.Lock()
_rpc_clients: dict[str | None, pyqwest.Client] = {}


def _rpc_http(ca_file: str | None = None) -> pyqwest.Client:
    """One pyqwest pool per process and CA file; it is not bound to an event loop, so sync and
    async share it. pyqwest trusts no CA unless told: the system's, as httpx does for the other
    requests, and `ca_file`'s."""
    with _rpc_lock:
        if ca_file not in _rpc_clients:
            _rpc_clients[ca_file] = pyqwest.Client(_PlainErrorTransport(pyqwest.HTTPTransport(
                follow_redirects=False, tls_include_system_certs=True,
                tls_ca_cert=_read_ca(ca_file) if ca_file else None)))
        return _rpc_clients[ca_file]


@functools.lru_cache(maxsize=None)
def _tls(ca_file: str | None = None) -> ssl.SSLContext:
    """One TLS context per process and CA file: loading the CA store takes ~25 ms, too much for
    every sandbox. `ca_file` is trusted besides the system's CAs; verification stays on."""
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(cadata=_read_ca(ca_file).decode("ascii", "replace"))
        except ssl.SSLError as e:
            raise E.InvalidArgument(f"ca_file {ca_file}: no PEM certificate in it ({e.reason or e})") from None
    return ctx


def _read_ca(ca_file: str) -> bytes:
    try:
        return Path(ca_file).read_bytes()
    except OSError as e:
        raise E.InvalidArgument(f"ca_file {ca_file}: cannot read it: {e.strerror}") from None


class Transport:
    """HTTP to one server. The httpx client belongs to the event loop that first used it."""

    def __init__(self, config: ConnectionConfig):
        self.config = config
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                base_url=self.config.api_url, timeout=self.config.request_timeout,
                headers={"User-Agent": USER_AGENT}, follow_redirects=False, verify=_tls(self.config.ca_file))
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            with translate():
                await client.aclose()

    async def request(self, method: str, path: str, *, not_found: type[E.NotFound] = E.NotFound,
                      request_timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """One request, bounded by `request_timeout` (else the config's) unless `timeout` is given
        as httpx takes it; error answers raise."""
        kwargs.setdefault("timeout", self.config.timeout(request_timeout))
        with translate(not_found):
            r = await self._http().request(method, path, **kwargs)
            if r.status_code >= 400:
                raise error_for_answer(r.status_code, r.content, not_found)
            return r

    @contextlib.asynccontextmanager
    async def open(self, method: str, path: str, *, not_found: type[E.NotFound] = E.NotFound,
                   request_timeout: float | None = None, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed response; error answers raise before the body is handed out."""
        kwargs.setdefault("timeout", self.config.timeout(request_timeout))
        with translate(not_found):
            async with self._http().stream(method, path, **kwargs) as r:
                if r.status_code >= 400:
                    body = await r.aread()
                    raise error_for_answer(r.status_code, body, not_found)
                yield r

    def _api_headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.config.api_key} if self.config.api_key else {}

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A control-plane call, authenticated with the API key."""
        return await self.request(method, path, headers=self._api_headers(), **kwargs)

    def open_api(self, method: str, path: str,
                 **kwargs: Any) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """A streamed control-plane call (`async with`), authenticated with the API key."""
        return self.open(method, path, headers=self._api_headers(), **kwargs)


def sandbox_path(sandbox_id: str, suffix: str = "") -> str:
    """The control plane's path of one sandbox (`/sandboxes/{id}`, the id quoted), or of `suffix` under it."""
    return f"/sandboxes/{quote(sandbox_id, safe='')}{suffix}"


def basic_user(user: str) -> str:
    """envd takes the acting user as HTTP Basic with an empty password."""
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


_JSON = google_protobuf_json_codec()


class Envd:
    """One sandbox's in-sandbox daemon: `/files` and `/health` over httpx, processes and the
    filesystem over Connect. Shared by `commands`, `files` and `pty`."""

    def __init__(self, transport: Transport, sandbox_id: str, access_token: str | None):
        self.transport = transport
        self.sandbox_id = sandbox_id
        self.access_token = access_token
        rpc: dict[str, Any] = dict(codec=_JSON, send_compression=None, accept_compression=(),
                                   http_client=_rpc_http(transport.config.ca_file))
        self.process = ProcessClient(transport.config.api_url, **rpc)
        self.filesystem = FilesystemClient(transport.config.api_url, **rpc)

    def headers(self, user: str | None = None, stream: bool = False) -> dict[str, str]:
        h = {"E2b-Sandbox-Id": self.sandbox_id, "E2b-Sandbox-Port": ENVD_PORT, "User-Agent": USER_AGENT}
        if self.access_token:
            h["X-Access-Token"] = self.access_token
        if user:
            h["Authorization"] = basic_user(user)
        if stream:
            h["Keepalive-Ping-Interval"] = "50"
        return h

    async def http(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                   not_found: type[E.NotFound] = E.NotFound, **kwargs: Any) -> httpx.Response:
        return await self.transport.request(method, path, headers={**self.headers(), **(headers or {})},
                                            not_found=not_found, **kwargs)

    def open(self, method: str, path: str, *, not_found: type[E.NotFound] = E.NotFound,
             **kwargs: Any) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        return self.transport.open(method, path, headers=self.headers(), not_found=not_found, **kwargs)

    async def call(self, method: Callable[..., Awaitable[R]], request: Message, *, user: str | None = None,
                   not_found: type[E.NotFound] = E.NotFound, request_timeout: float | None = None) -> R:
        """A unary RPC, bounded by `request_timeout` (else the config's)."""
        limit = self.transport.config.timeout(request_timeout)
        with translate(not_found):
            return await method(request, headers=self.headers(user),
                                timeout_ms=int(limit * 1000) if limit else None)

    async def stream(self, method: Callable[..., AsyncIterator[R]], request: Message, *, user: str | None = None,
                     timeout: float | None = None, not_found: type[E.NotFound] = E.NotFound) -> AsyncIterator[R]:
        """A server stream. `timeout` bounds the whole call (the server also ends the work then);
        None or 0 means no limit. A broken stream is explained by probing /health."""
        timeout_ms = int(timeout * 1000) if timeout else None
        events = method(request, headers=self.headers(user, stream=True), timeout_ms=timeout_ms)
        try:
            with translate(not_found):
                async for event in events:
                    yield event
        except E.SandlotError as e:
            better = await self.explain(e) if e.details.get("lost") else e
            if better is e:
                raise
            raise better from e
        finally:
            with translate(not_found):
                await cast(AsyncGenerator[R, None], events).aclose()  # connectrpc streams are generators

    async def is_running(self, request_timeout: float | None = None) -> bool:
        """False once the sandbox is killed, expired or paused (the server answers 502)."""
        try:
            await self.http("GET", "/health", request_timeout=request_timeout)
        except E.SandboxNotRunning:
            return False
        return True

    async def explain(self, err: E.SandlotError) -> E.SandlotError:
        """Turn a broken connection into SandboxNotRunning when that is what happened."""
        try:
            await self.http("GET", "/health")
        except E.SandboxNotRunning as gone:
            if gone.details.get("paused"):
                return gone
            return E.SandboxNotRunning("the sandbox was killed or reached its end of life while the request "
                                       "was in flight")
        except E.SandlotError:
            return err
        return err
