"""The HTTP listener: uvicorn, bounded against clients that hold connections without finishing.

uvicorn times out idle connections between requests (`timeout_keep_alive`) but not a request
whose headers never end, and accepts connections until the process runs out of fds (then asyncio
logs a traceback per refused accept). So each connection here has `header_timeout` seconds to
send a request's headers, from its accept or the end of its previous answer, and at most
`max_connections` are open: past it, of the client address holding the most connections, the
one that has waited longest for headers is closed to make room (a connection being answered is
never touched). So a flood of half-sent requests from one address evicts its own connections and
cannot keep others out. Drops are counted (sandlot_dropped_connections_total) and
logged at most once per RATE_WINDOW.
With TLS (server/tls.py) a connection is admitted once its handshake is done; until then asyncio
bounds it (60 s for the handshake).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import ssl
from collections import Counter
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Config
from .logs import RateLimit

log = logging.getLogger("sandlot.listener")
log.addFilter(RateLimit())

MAX_HEADER_BYTES = 16 * 1024  # h11's default, kept: a longer header block is a 400
FDS_PER_CONNECTION_SHARE = 2  # at most half the process's fds go to client connections
# At a stop, an idle connection is closed. Over TLS that close waits for the client's close_notify
# (asyncio: up to 30 s), which an idle keep-alive client never reads its socket to send; the stop
# would wait for it. Past this grace the connection is aborted instead.
SHUTDOWN_GRACE = 1.0
# Writes below this many bytes in one loop turn wait for the next turn and go out as one send
COALESCE_BYTES = 16 * 1024


class Admission:
    """The server's open connections (counted per client address) and those waiting for a
    request's headers (oldest first)."""

    def __init__(self, max_connections: int, header_timeout: float, on_drop: Callable[[str], None]):
        self.max_connections, self.header_timeout, self.on_drop = max_connections, header_timeout, on_drop
        self.open: set[BoundedHttp] = set()
        self.per_address: Counter[str] = Counter()
        self.waiting: dict[BoundedHttp, asyncio.TimerHandle] = {}

    def admit(self, conn: BoundedHttp) -> bool:
        """Count `conn` in; past the limit close a waiting connection of the busiest address
        (`conn` itself if it is the one). Whether `conn` stays open."""
        self.open.add(conn)
        self.per_address[conn.address] += 1
        if len(self.open) <= self.max_connections:
            return True
        oldest: dict[str, BoundedHttp] = {}
        for waiting in self.waiting:  # oldest first
            oldest.setdefault(waiting.address, waiting)
        oldest.setdefault(conn.address, conn)  # the newcomer waits too, last
        victim = oldest[max(oldest, key=lambda address: self.per_address[address])]
        self.drop(victim, "over_limit")
        return victim is not conn

    def wait_for_headers(self, conn: BoundedHttp) -> None:
        if conn in self.open and conn not in self.waiting:
            self.waiting[conn] = conn.loop.call_later(self.header_timeout, self.drop, conn, "header_timeout")

    def headers_received(self, conn: BoundedHttp) -> None:
        if timer := self.waiting.pop(conn, None):
            timer.cancel()

    def forget(self, conn: BoundedHttp) -> None:
        self.headers_received(conn)
        if conn in self.open:
            self.open.remove(conn)
            self.per_address[conn.address] -= 1
            if not self.per_address[conn.address]:
                del self.per_address[conn.address]

    def drop(self, conn: BoundedHttp, reason: str) -> None:
        self.forget(conn)
        conn.transport.close()
        # uvicorn counts a connection towards limit_concurrency until its connection_lost, a loop
        # turn later: a flood accepted in one round would have live clients answered 503 meanwhile
        conn.connections.discard(conn)
        self.on_drop(reason)
        log.warning("closing client connections: %s (max %d open, %g s for a request's headers)",
                    reason.replace("_", " "), self.max_connections, self.header_timeout)


class CoalescedWrites:
    """A connection's transport whose small writes within one loop turn go out in one send, at
    the start of the next turn.

    A streamed answer is written in pieces (uvicorn writes the headers, then each body message):
    a command's Connect stream was four sends, each a trip through the kernel's TCP path and a
    wake-up of the client; coalesced, three (headers with the start event). Writes reach the
    socket in order: once COALESCE_BYTES are waiting they go at once, and a large write goes as it
    is, after them (so the transport's flow control sees a large body as it did); an answer's end
    (BoundedHttp.on_response_complete), a close or an end-of-file sends what is waiting at once.
    Everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self.transport, self._loop = transport, loop
        self._waiting: list[bytes] = []
        self._size = 0
        self._flush_at: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if len(data) >= COALESCE_BYTES:  # not copied into one with what waits: sent after it
            self.flush()
            self.transport.write(data)
            return
        self._waiting.append(data)
        self._size += len(data)
        if self._size >= COALESCE_BYTES:
            self.flush()
        elif self._flush_at is None:
            self._flush_at = self._loop.call_soon(self.flush)

    def writelines(self, chunks) -> None:
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._waiting:
            data = self._waiting[0] if len(self._waiting) == 1 else b"".join(self._waiting)
            self._waiting.clear()
            self._size = 0
            self.transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        self._waiting.clear()
        self._size = 0
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._size + self.transport.get_write_buffer_size()

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


class BoundedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, admitted and timed by the server's Admission, with the header
    block bounded as h11's was (llhttp does not bound it). llhttp parses in C: with h11's pure-Python
    parsing the server spent 21-26% more CPU per command (A/B, Dec 6)."""

    admission: Admission  # set on the subclass made for each server (protocol_class)
    _unanswered = 0  # requests whose headers are in and whose answer is not complete
    _in_headers = False  # a request's first bytes are in, its header block is not complete
    _read_bytes = 0  # of the reads that left the block incomplete (llhttp holds a part-parsed line)
    _block_bytes = 0  # of the block's parsed request line and headers

    @property
    def address(self) -> str:
        return self.client[0] if self.client else ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        if self.admission.admit(self):
            self.admission.wait_for_headers(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():
            self._read_bytes += len(data)  # whole reads: one may also hold the previous body's end
            if self._read_bytes > MAX_HEADER_BYTES:
                self.send_400_response("Request header fields too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._read_bytes, self._block_bytes = True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._block_bytes += size
        if self._block_bytes > MAX_HEADER_BYTES:  # feed_data raises it as a parser error: a 400
            raise ValueError("request header fields too large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._unanswered += 1
        self.admission.headers_received(self)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if isinstance(self.transport, CoalescedWrites):
            self.transport.flush()  # an answer's end goes now, not a loop turn later
        self._unanswered -= 1
        super().on_response_complete()
        if not self.transport.is_closing() and not self._unanswered:
            self.admission.wait_for_headers(self)  # the next request's headers, in time

    def handle_websocket_upgrade(self) -> None:
        # the connection goes on under the WebSocket protocol, and this one's connection_lost never
        # runs: out of the count now (else every upgrade held a place for good, and after
        # max_connections of them every newcomer was dropped); uvicorn's limit_concurrency still
        # bounds open WebSockets
        self.admission.forget(self)
        if isinstance(self.transport, CoalescedWrites):  # the WebSocket protocol writes its own frames
            self.transport.flush()
            self.transport = self.transport.transport
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        super().shutdown()
        if self.transport.is_closing():  # it was idle: closed now, or when TLS has said goodbye
            self.loop.call_later(SHUTDOWN_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self in self.connections:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.admission.forget(self)
        super().connection_lost(exc)


def protocol_class(admission: Admission) -> type[BoundedHttp]:
    return type("SandlotHttp", (BoundedHttp,), {"admission": admission})


def connection_budget(wanted: int) -> int:
    """`wanted`, within a share of the fds this process may open. The limit is not raised here:
    sandboxes inherit it (the service unit sets it)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = max(8, soft // FDS_PER_CONNECTION_SHARE)
    if wanted > budget:
        logging.getLogger("sandlot.listener").warning(
            "SANDLOT_MAX_CONNECTIONS=%d is more than half the fds this process may open (%d): using %d",
            wanted, soft, budget)
    return min(wanted, budget)


def accepts_per_round(max_connections: int) -> int:
    """How many connections asyncio accepts per loop turn (its `backlog`). A connection dropped
    on admission holds its fd until its close runs, three turns after its accept (accept, then
    the transport's task, connection_made, the close), so a flood keeps up to three rounds of
    accepted fds on top of the open connections: a quarter each keeps all under 2 * max
    (FDS_PER_CONNECTION_SHARE's budget)."""
    return max(8, accept_queue(max_connections) // 4)


def accept_queue(max_connections: int) -> int:
    return min(2048, max_connections)


class Listener(uvicorn.Server):
    """uvicorn's server with the kernel's accept queue at the connection limit: asyncio sets it
    to `backlog`, kept small as the per-turn accept count, and a short queue would leave clients'
    handshakes waiting on SYN retries whenever a flood fills it."""

    def __init__(self, config: uvicorn.Config, queue: int):
        super().__init__(config)
        self.queue = queue

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in getattr(self, "servers", []):  # none if the start failed
            for sock in server.sockets:
                # listen() again only widens the queue; asyncio's per-turn accept count stays
                with socket.socket(fileno=os.dup(sock.fileno())) as same:
                    same.listen(self.queue)


def listener(app, config: Config, on_drop: Callable[[str], None], tls: ssl.SSLContext | None = None) -> Listener:
    """`tls`: the listener's TLS context (server/tls.py), None for plain HTTP."""
    max_connections = connection_budget(config.max_connections)
    admission = Admission(max_connections, config.header_timeout, on_drop)
    return Listener(uvicorn.Config(
        # WebSocket: the port proxy relays it into sandboxes (server/proxy.py)
        app, host=config.host, port=config.port, http=protocol_class(admission), ws="websockets-sansio",
        loop="asyncio",  # not uvloop, even where it is installed: the server is built and tested on asyncio's
        log_config=None, log_level=config.log_level, access_log=False,  # observe.py writes the access log
        timeout_keep_alive=config.keepalive_timeout,
        # a backstop for requests in flight (answered 503 past it); connections are bounded above
        limit_concurrency=2 * max_connections,
        backlog=accepts_per_round(max_connections),
        ssl_context_factory=(lambda _config, _default: tls) if tls is not None else None,
    ), queue=accept_queue(max_connections))


def run(app, config: Config, on_drop: Callable[[str], None], tls: ssl.SSLContext | None = None) -> None:
    listener(app, config, on_drop, tls).run()
