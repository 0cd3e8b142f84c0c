"""Ports in: the control plane's reverse proxy to any port a process in a sandbox listens on.

Routing (E2B's, docs/e2b.md §1.4): a Host of `{port}-{sandboxId}.{domain}` (what `get_host(port)`
returns; `{port}-{sandboxId}-{token}.{domain}` is a signed preview URL), or the headers
`E2b-Sandbox-Id` + `E2b-Sandbox-Port`. Ports 49983/49999 are envd's and the code interpreter's, served
by the app itself (a Host-routed request gets the sandbox-id header it implies); every other port is
proxied: HTTP/1.1 with bodies streamed both ways (server-sent events, MCP streamable HTTP), and
WebSocket (relayed message by message with the `websockets` library).

How it reaches in: a socket made inside the sandbox's network namespace (runtime.port_socket) and
connected to 127.0.0.1 (then ::1) there, so a sandbox with no network at all, or a server bound to
loopback only, is reachable as on E2B. Upstream HTTP is httpcore (httpx's core) over such sockets,
one keep-alive pool per sandbox, closed when the sandbox stops.

Who may: a sandbox is public unless created with `allowPublicTraffic: false`; then a request needs
the `E2B-Traffic-Access-Token` header (the sandbox's trafficAccessToken) or a preview URL's token,
which the API key holder makes with POST /sandboxes/{id}/ports/{port}/expose (signed, expiring;
unexpose revokes it). The proxy never forwards the token, the routing headers or an API key.
A request it admits for a paused sandbox that asked for auto-resume resumes it first (lifecycle.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import socket

import httpcore
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import _exceptions as E

log = logging.getLogger("sandlot.proxy")

TRAFFIC_TOKEN_HEADER = b"e2b-traffic-access-token"
_HOST = re.compile(r"^(\d{1,5})-([a-z0-9]{1,64})(?:-([a-z0-9]{1,63}))?\.", re.I)
# never forwarded: hop-by-hop (RFC 9110, section 7.6.1), routing, credentials of the control plane
_DROP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te",
                   b"trailer", b"transfer-encoding", b"upgrade", b"host", b"e2b-sandbox-id",
                   b"e2b-sandbox-port", TRAFFIC_TOKEN_HEADER, b"x-api-key"})
_WS_DROP = _DROP | {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
                    b"sec-websocket-protocol", b"content-length"}
NOT_FOUND = "The sandbox was not found"
PORT_CLOSED = "The sandbox is running but port is not open"
REPLAY_MAX = 1 << 20  # request bodies up to this are kept to be sent again on a fresh connection


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's view of a connection we made ourselves (inside a sandbox's namespace)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await asyncio.wait_for(self._reader.read(max_bytes), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._writer.write(buffer)
        await asyncio.wait_for(self._writer.drain(), timeout)

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    def get_extra_info(self, info: str):
        if info == "is_readable":  # httpcore asks before reusing an idle connection: closed by the server?
            return self._reader.at_eof() or self._writer.is_closing()
        return self._writer.get_extra_info("socket") if info == "socket" else None


class _IntoSandbox(httpcore.AsyncNetworkBackend):
    """Connections to a port on the sandbox's loopback, whatever host httpcore asks for."""

    def __init__(self, runtime, rt):
        self.runtime, self.rt = runtime, rt

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        sock = await connect_into(self.runtime, self.rt, port, timeout)
        reader, writer = await asyncio.open_connection(sock=sock)
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


ENVD_PORTS = frozenset({49983, 49999})


async def connect_into(runtime, rt, port: int, timeout: float | None = 10) -> socket.socket:
    """A connected socket to `port` on the sandbox's loopback (127.0.0.1, else ::1)."""
    loop = asyncio.get_running_loop()
    error: OSError | None = None
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = runtime.port_socket(rt, family)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            error = e if isinstance(e, OSError) else OSError(f"connecting to port {port} timed out")
    raise error


class PortProxy:
    """ASGI middleware in front of the whole app (see the module docstring)."""

    def __init__(self, app: ASGIApp, service, exposures, domain: str | None = None):
        self.app, self.service, self.exposures = app, service, exposures
        # with a domain configured, only its hosts are sandbox ports; without, any `{port}-{id}.` host
        self.domain = domain.rsplit(":", 1)[0].lower() if domain else None
        self._pools: dict[str, httpcore.AsyncConnectionPool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        target = _target(headers, self.domain)
        if target is None:
            return await self.app(scope, receive, send)
        sid, port, token, by_host = target
        if not 0 < port < 65536:  # before any lookup: says nothing of the sandbox
            return await _refuse(scope, send, 400, f"port must be 1-65535, got {port}")
        if port in ENVD_PORTS:  # envd and the interpreter: the app's own routes
            if by_host and b"e2b-sandbox-id" not in headers:
                scope = {**scope, "headers": [*scope["headers"], (b"e2b-sandbox-id", sid.encode())]}
            return await self.app(scope, receive, send)
        live = self.service.get_running(sid)
        paused = self.service.paused.get(sid) if live is None else None
        if paused is not None and self._admitted(paused, headers, port, token):
            try:  # auto-resume (lifecycle.wake: only a sandbox that asked for it), as envd requests do
                await self.service.wake(sid)
            except E.SandlotError as e:  # a quota, the host's memory: the resume's own answer
                return await _refuse(scope, send, e.status, e.message)
            live = self.service.get_running(sid)
        if live is None:
            return await _refuse(scope, send, 502, NOT_FOUND)
        if not hasattr(self.service.runtime, "port_socket"):  # the rootless tier cannot enter a namespace
            return await _refuse(scope, send, 501, "ports in need the namespace runtime (a server run as root)")
        if not self._admitted(live, headers, port, token):
            return await _refuse(scope, send, 403, "this sandbox's traffic is private: send its "
                                                   "E2B-Traffic-Access-Token header or use a preview URL")
        upstream_host = _masked_host(live, port, headers.get(b"host", b"").decode("latin-1"))
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send, live, port, upstream_host)
        return await self._http(scope, receive, send, live, port, upstream_host)

    def _admitted(self, live, headers: dict, port: int, token: str | None) -> bool:
        ingress = (live.record.network or {}).get("ingress") or {}
        if ingress.get("allowPublicTraffic", True):
            return True
        given = headers.get(TRAFFIC_TOKEN_HEADER)
        if given is not None and live.access_token and hmac.compare_digest(given, live.access_token.encode()):
            return True
        return token is not None and self.exposures.valid(live.record, port, token)

    def _pool(self, live) -> httpcore.AsyncConnectionPool:
        pool = self._pools.get(live.id)
        if pool is None:
            pool = self._pools[live.id] = httpcore.AsyncConnectionPool(
                network_backend=_IntoSandbox(self.service.runtime, live.rt), max_connections=64,
                keepalive_expiry=30, retries=0)

            async def close_when_stopped() -> None:
                await live.closed.wait()
                if self._pools.get(live.id) is pool:
                    del self._pools[live.id]
                await pool.aclose()

            asyncio.get_running_loop().create_task(close_when_stopped())
        return pool

    async def _http(self, scope: Scope, receive: Receive, send: Send, live, port: int, host: str) -> None:
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        headers = [(b"host", host.encode("latin-1"))] + _forwarded(scope)
        url = httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=port, target=target)
        method = scope["method"].encode()
        body = _Body(receive, dict(scope["headers"]))
        started = False
        # An idle kept-alive connection the sandbox's server has just closed fails on first use; a
        # body we still hold is sent again on a fresh one. A body too large to hold goes on a
        # fresh connection from the start (no reuse, no race).
        for attempt in (1, 2):
            pool = self._pool(live) if body.replayable else httpcore.AsyncHTTPConnection(
                httpcore.Origin(b"http", b"127.0.0.1", port), network_backend=self._pool(live)._network_backend)
            try:
                async with pool.stream(method, url, headers=headers,
                                       content=body.chunks() if body.present else None) as response:
                    await send({"type": "http.response.start", "status": response.status,
                                "headers": _returned(response.headers)})
                    started = True
                    async for chunk in response.aiter_stream():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            except (OSError, httpcore.ConnectError, httpcore.RemoteProtocolError, httpcore.ReadError,
                    httpcore.WriteError, E.SandboxNotRunning) as e:
                if started:  # the body broke off: end the response where it stands
                    log.debug("sandbox %s port %s: response broke off: %s", live.id, port, e)
                    return
                refused = isinstance(e, (ConnectionRefusedError, httpcore.ConnectError, E.SandboxNotRunning))
                if attempt == 2 or refused or not body.replayable:
                    await _refuse(scope, send, 502, PORT_CLOSED, port=port, sandboxId=live.id)
                    return
            finally:
                if not body.replayable:
                    await pool.aclose()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, live, port: int, host: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        first = await receive()  # websocket.connect
        if first["type"] != "websocket.connect":
            return
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        try:
            sock = await connect_into(self.service.runtime, live.rt, port)
            upstream = await connect(
                f"ws://{host}{target}", sock=sock, subprotocols=scope.get("subprotocols") or None,
                additional_headers=[(k.decode("latin-1"), v.decode("latin-1"))
                                    for k, v in scope["headers"] if k.lower() not in _WS_DROP],
                compression=None, max_size=None, ping_interval=None, proxy=None, user_agent_header=None,
                open_timeout=10, close_timeout=2)
        except (OSError, InvalidHandshake, asyncio.TimeoutError, E.SandboxNotRunning) as e:
            log.debug("sandbox %s port %s: no websocket: %s", live.id, port, e)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def inward() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(message.get("code", 1000))
                    return
                data = message.get("text") if message.get("text") is not None else message.get("bytes")
                await upstream.send(data)

        async def outward() -> None:
            try:
                async for data in upstream:
                    key = "text" if isinstance(data, str) else "bytes"
                    await send({"type": "websocket.send", key: data})
            except ConnectionClosed:
                pass
            code = upstream.close_code or 1000
            await send({"type": "websocket.close", "code": code if code != 1005 else 1000})

        tasks = [asyncio.ensure_future(inward()), asyncio.ensure_future(outward())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def _target(headers: dict, domain: str | None) -> tuple[str, int, str | None, bool] | None:
    """(sandbox id, port, preview token, routed by Host) of a request for a sandbox's port."""
    host = headers.get(b"host", b"").decode("latin-1")
    m = _HOST.match(host)
    if m and (domain is None or host[m.end():].rsplit(":", 1)[0].lower() == domain):
        return m.group(2).lower(), int(m.group(1)), m.group(3) and m.group(3).lower(), True
    sid, port = headers.get(b"e2b-sandbox-id"), headers.get(b"e2b-sandbox-port")
    if sid and port and port.isdigit() and int(port) not in ENVD_PORTS:
        return sid.decode("latin-1"), int(port), None, False
    return None


def _masked_host(live, port: int, host: str) -> str:
    """The Host the sandbox sees: E2B's maskRequestHost (`${PORT}` replaced) if set, else the
    request's own."""
    mask = ((live.record.network or {}).get("ingress") or {}).get("maskRequestHost")
    return mask.replace("${PORT}", str(port)) if mask else (host or f"127.0.0.1:{port}")


def _returned(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The sandbox's response headers the client gets. A chunked answer's body is the decoded chunks
    whatever Content-Length it also claims (RFC 9112, section 6.3): the claim is dropped, else the
    server would refuse to send a body of another length (a traceback per request, any sandbox)."""
    chunked = any(k.lower() == b"transfer-encoding" for k, _ in headers)
    return [(k, v) for k, v in headers if k.lower() not in _DROP and not (chunked and k.lower() == b"content-length")]


def _forwarded(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _DROP]
    client = scope.get("client")
    if client:
        headers.append((b"x-forwarded-for", client[0].encode()))
    headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    return headers


class _Body:
    """A request body read from the client as the sandbox takes it, kept (up to REPLAY_MAX bytes,
    as its Content-Length announces) so that it can be sent again."""

    def __init__(self, receive: Receive, headers: dict):
        self._receive = receive
        length = headers.get(b"content-length", b"0")  # neither it nor chunked framing: no body
        chunked = b"transfer-encoding" in headers
        # without a body httpcore must get none (an iterator, even empty, makes it send chunked framing)
        self.present = chunked or length != b"0"
        self.replayable = not chunked and length.isdigit() and int(length) <= REPLAY_MAX
        self._kept: list[bytes] = []
        self._done = False

    async def chunks(self):
        for chunk in self._kept:
            yield chunk
        while not self._done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._done = True
                return
            if message.get("body"):
                if self.replayable:
                    self._kept.append(message["body"])
                yield message["body"]
            self._done = not message.get("more_body")


async def _refuse(scope: Scope, send: Send, status: int, message: str, **extra) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008 if status == 403 else 1011})
        return
    body = json.dumps({"code": status, "message": message, **extra}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
