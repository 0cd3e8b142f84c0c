"""HTTP/2 through the egress proxy (egress_proxy.py): an h2 server connection towards the sandbox
and an h2 client connection towards the upstream (hyper-h2 on both), each request stream's HEADERS
given a rule's headers, everything else relayed stream by stream.

- Headers: `for_host(host)` of the request's :authority (or Host; both must agree) gives the
  rule's headers, set in lower case (a same-named field of the sandbox's is dropped), never-indexed
  by HPACK (a secret stays out of the compression tables). Pseudo-headers are never touched.
- Flow control: data received from one side is acknowledged to it (WINDOW_UPDATE) only once it
  was handed to the other side's connection within that side's window and its socket drained, so
  a slow reader slows its writer and at most WINDOW bytes wait here per connection and direction.
- DATA, trailers (gRPC's status), 1xx, RST_STREAM and END_STREAM are passed on per stream, in
  order. SETTINGS and PING are answered by each connection itself (they are hop by hop); server
  push is refused. GOAWAY from either side is passed on: the streams already admitted finish, new
  ones are refused (REFUSED_STREAM: a client retries them), the streams the upstream refused are
  refused to the sandbox.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (ConnectionTerminated, DataReceived, InformationalResponseReceived, RequestReceived,
                       ResponseReceived, StreamReset, TrailersReceived)
from h2.exceptions import ProtocolError, StreamClosedError, TooManyStreamsError
from h2.settings import SettingCodes, Settings
from hpack import NeverIndexedHeaderTuple

from .egress_http import CHUNK, IDLE_TIMEOUT, _end, _host_only

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what an h2c client sends first (RFC 9113 3.4)
WINDOW = 256 * 1024  # bytes either side may send ahead, per stream and per connection
MAX_STREAMS = 100  # concurrent streams the sandbox may open (the common default)


class _Side:
    """One of the two connections, and what waits to be sent on it, per stream, in order."""

    def __init__(self, client: bool, reader, writer) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=client, header_encoding=None))
        self.open_state = ConnectionState.CLIENT_OPEN if client else ConnectionState.SERVER_OPEN
        self.reader, self.writer = reader, writer
        # stream id -> items: ("h", headers, end) | ("d", data, end, source side, source stream, padding)
        self.queues: dict[int, deque] = {}
        self.peer: _Side | None = None
        settings = {SettingCodes.INITIAL_WINDOW_SIZE: WINDOW, SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS}
        if client:
            settings[SettingCodes.ENABLE_PUSH] = 0
        self.h2.local_settings = Settings(client=client, initial_values={**self.h2.local_settings, **settings})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(WINDOW - 65535)  # the connection's, from its default

    def write(self) -> None:
        if data := self.h2.data_to_send():
            self.writer.write(data)


class _Relay:
    def __init__(self, cr, cw, ur, uw, for_host: Callable[[str], Any]) -> None:
        self.down, self.up = _Side(False, cr, cw), _Side(True, ur, uw)
        self.down.peer, self.up.peer = self.up, self.down
        self.for_host = for_host
        self.streams: dict[tuple[int, int], int] = {}  # (id(side), stream) -> the other side's stream
        self.ended: set[tuple[int, int]] = set()  # (id(side), stream) whose end was passed to that side
        self.closing = False  # a GOAWAY went by: no new streams; the relay ends when none is left
        self.told: set[int] = set()  # id(side) of the sides we sent a GOAWAY
        self.moved = time.monotonic()

    async def run(self) -> None:
        await self.flush()
        tasks = [asyncio.ensure_future(self.read(side)) for side in (self.down, self.up)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _end(*tasks)

    async def read(self, side: _Side) -> None:
        while True:
            try:
                data = await asyncio.wait_for(side.reader.read(CHUNK), IDLE_TIMEOUT)
            except asyncio.TimeoutError:
                if time.monotonic() - self.moved < IDLE_TIMEOUT:
                    continue  # the other way is busy
                raise
            if not data:  # the connection ended: the other one is told so
                self.goaway(side.peer)
                await self.flush()
                return
            self.moved = time.monotonic()
            try:
                events = side.h2.receive_data(data)
            except ProtocolError:  # h2 has queued its GOAWAY for the offender
                self.goaway(side.peer, ErrorCodes.INTERNAL_ERROR if side is self.up else ErrorCodes.NO_ERROR)
                await self.flush()
                return
            for event in events:
                self.handle(side, event)
            self.pump()
            await self.flush()
            if self.closing and not self.streams:
                return

    async def flush(self) -> None:
        for side in (self.down, self.up):
            side.write()
        for side in (self.down, self.up):
            await side.writer.drain()

    # ---- events ------------------------------------------------------------------------------

    def handle(self, side: _Side, ev) -> None:
        other = side.peer
        if isinstance(ev, RequestReceived):  # only the sandbox's side is a server
            self.request(ev)
        elif isinstance(ev, (ResponseReceived, InformationalResponseReceived, TrailersReceived)):
            if (target := self.streams.get((id(side), ev.stream_id))) is not None:
                end = getattr(ev, "stream_ended", None) is not None  # a 1xx never ends one
                other.queues.setdefault(target, deque()).append(("h", ev.headers, end))
        elif isinstance(ev, DataReceived):
            target = self.streams.get((id(side), ev.stream_id))
            if target is None:
                side.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                other.queues.setdefault(target, deque()).append(
                    ["d", ev.data, ev.stream_ended is not None, side, ev.stream_id,
                     ev.flow_controlled_length - len(ev.data)])
        elif isinstance(ev, StreamReset):
            target = self.streams.get((id(side), ev.stream_id))
            self.forget(side, ev.stream_id)
            if target is not None:
                self.reset(other, target, ev.error_code)
        elif isinstance(ev, ConnectionTerminated):
            self.goaway_received(side, ev)
        # WindowUpdated, RemoteSettingsChanged: pump() after the batch sends what now fits;
        # PING, SETTINGS: answered by h2 itself; the rest (priority, unknown frames) is not passed on

    def request(self, ev: RequestReceived) -> None:
        if self.closing:
            self.down.h2.reset_stream(ev.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = self.up.h2.get_next_available_stream_id()
        try:
            self.up.h2.send_headers(stream, self.with_rules(ev.headers), end_stream=ev.stream_ended is not None)
        except TooManyStreamsError:  # the upstream allows fewer at once than we do
            self.down.h2.reset_stream(ev.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self.streams[(id(self.down), ev.stream_id)] = stream
        self.streams[(id(self.up), stream)] = ev.stream_id
        if ev.stream_ended is not None:
            self.ended.add((id(self.up), stream))

    def with_rules(self, headers: list) -> list:
        hosts = {_host_only(v.decode("latin-1")).rstrip(".") for n, v in headers if n in (b":authority", b"host")}
        add = self.for_host(hosts.pop()) if len(hosts) == 1 else None
        if not add:
            return headers
        add = [(n.lower().encode(), v.encode()) for n, v in add if not n.startswith(":")]
        names = {n for n, _ in add}
        return [h for h in headers if h[0] not in names] + [NeverIndexedHeaderTuple(n, v) for n, v in add]

    def goaway_received(self, side: _Side, ev: ConnectionTerminated) -> None:
        # h2 closes its whole connection on a GOAWAY, though the streams admitted before it may
        # still finish (RFC 9113 6.8): put it back for them; new ones are refused above
        side.h2.state_machine.state = side.open_state
        if side is self.up:  # streams above its last one were never processed: the client may retry them
            for (owner, stream), target in list(self.streams.items()):
                if owner == id(self.up) and stream > ev.last_stream_id:
                    self.forget(self.up, stream)
                    self.reset(self.down, target, ErrorCodes.REFUSED_STREAM)
        self.goaway(side.peer, ev.error_code)

    def goaway(self, side: _Side, code: int = ErrorCodes.NO_ERROR) -> None:
        self.closing = True
        if id(side) not in self.told:
            self.told.add(id(side))
            side.h2.close_connection(code)
            side.h2.state_machine.state = side.open_state

    def reset(self, side: _Side, stream: int, code: int) -> None:
        self.forget(side, stream)
        try:
            side.h2.reset_stream(stream, code)
        except (StreamClosedError, ProtocolError):
            pass

    def forget(self, side: _Side, stream: int) -> None:
        """Drop a stream's pairing and what waits to go out on it; its data's connection-level
        window goes back to where it came from."""
        target = self.streams.pop((id(side), stream), None)
        if target is not None:
            self.streams.pop((id(side.peer), target), None)
            self.ended.discard((id(side.peer), target))
            self.drop(side.peer, target)
        self.ended.discard((id(side), stream))
        self.drop(side, stream)

    def drop(self, side: _Side, stream: int) -> None:
        for item in side.queues.pop(stream, ()):
            if item[0] == "d":
                item[3].h2.acknowledge_received_data(len(item[1]) + item[5], item[4])

    # ---- data out, as windows allow -----------------------------------------------------------

    def pump(self) -> None:
        for side in (self.down, self.up):
            for stream in list(side.queues):
                try:
                    self.send(side, stream)
                except StreamClosedError:  # closed under us (a reset crossing ours)
                    self.forget(side, stream)
                if not side.queues.get(stream, True):
                    del side.queues[stream]

    def send(self, side: _Side, stream: int) -> None:
        queue, conn = side.queues[stream], side.h2
        while queue:
            item = queue[0]
            if item[0] == "h":
                conn.send_headers(stream, item[1], end_stream=item[2])
                queue.popleft()
                if item[2]:
                    self.ended_on(side, stream)
                continue
            _, data, end, source, source_stream, padding = item
            n = min(len(data), conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            if n == 0 and data:
                return  # until a WINDOW_UPDATE
            conn.send_data(stream, data[:n], end_stream=end and n == len(data))
            source.h2.acknowledge_received_data(n + (padding if n == len(data) else 0), source_stream)
            if n < len(data):
                item[1], item[5] = data[n:], padding
                continue
            queue.popleft()
            if end:
                self.ended_on(side, stream)

    def ended_on(self, side: _Side, stream: int) -> None:
        """Both directions of a pair ended: it is done here (h2 keeps what it needs)."""
        self.ended.add((id(side), stream))
        target = self.streams.get((id(side), stream))
        if target is not None and (id(side.peer), target) in self.ended:
            self.ended -= {(id(side), stream), (id(side.peer), target)}
            self.streams.pop((id(side), stream), None)
            self.streams.pop((id(side.peer), target), None)


async def relay_h2(cr, cw, ur, uw, for_host: Callable[[str], Any]) -> None:
    """HTTP/2 from the sandbox (cr, cw; its TLS negotiated h2, or h2c with prior knowledge) to
    the upstream (ur, uw; the same), each request with the headers `for_host(host)` gives."""
    await _Relay(cr, cw, ur, uw, for_host).run()

