"""TLS to a user's SOCKS5 proxy (E2B's `network.egressProxy.tls`): the hop socks.py dials through.

The egress proxy (egress_proxy.py) wants a plain socket upstream (it peeks at it, wraps it in TLS
for header rules), so a hop is a socket pair: python-socks runs the SOCKS5 handshake over one end,
which the egress proxy then gets; a task on the egress proxy's loop relays the other end to the
TLS connection, and ends when the egress proxy closes its end. The TLS is driven through memory
BIOs, not asyncio's TLS transport, which cannot end its sending while it still reads: a sandbox's
half-close reaches the proxy as a close_notify (as at E2B) and the answer still comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl

CHUNK = 64 * 1024


@functools.lru_cache(maxsize=32)
def context(ca_pem: str | None) -> ssl.SSLContext:
    """Verifies the proxy: host name checked, TLS 1.2 at least; `ca_pem` alone when given (E2B: it
    replaces the system trust store), else the system's (loading that takes milliseconds: kept)."""
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # so that writing never waits for reading (TLS 1.2's)
    return ctx


class Hop:
    """python-socks' `forward` (the connection to the proxy, made by another): TLS to the proxy's
    pinned address, verified for `server_name`. Fails on a failed handshake: never plaintext."""

    def __init__(self, ip: str, port: int, server_name: str, ca_pem: str | None):
        self.ip, self.port, self.server_name, self.ca_pem = ip, port, server_name, ca_pem

    async def connect(self, **_) -> socket.socket:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(tcp, (self.ip, self.port))
            tls = _Tls(tcp, context(self.ca_pem), self.server_name)
            await tls.handshake()
        except BaseException:  # a cancelled sock_* call has left the selector before we resume
            tcp.close()
            raise
        # from here on nothing awaits: the pair and its relay exist together, or not at all
        ours, theirs = socket.socketpair()
        hop = HopSocket(ours.family, ours.type, fileno=ours.detach())
        hop.setblocking(False)
        theirs.setblocking(False)
        hop.relay = asyncio.get_running_loop().create_task(_relay(theirs, tls))
        return hop


class HopSocket(socket.socket):
    """The egress proxy's end of a hop: closing it (the egress proxy does, or a transport it was
    handed to) ends the relay, which closes the other end and the TLS connection."""

    relay: asyncio.Task | None = None

    def close(self) -> None:
        super().close()
        if self.relay is not None and not self.relay.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.relay.cancel()


async def _relay(pair: socket.socket, tls: _Tls) -> None:
    """Bytes between the pair's other end and the TLS connection, each way until it ends (a
    half-close passed on), until both did or one failed."""
    loop = asyncio.get_running_loop()

    async def down() -> None:
        while data := await tls.read():
            await loop.sock_sendall(pair, data)
        pair.shutdown(socket.SHUT_WR)

    async def up() -> None:
        while data := await loop.sock_recv(pair, CHUNK):
            await tls.write(data)
        await tls.write_eof()

    ways = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(ways, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        try:
            for way in ways:
                way.cancel()
            await asyncio.gather(*ways, return_exceptions=True)
        finally:
            pair.close()
            tls.close()


class _Tls:
    """A TLS client over a connected non-blocking socket."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_name: str):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        self.sending = asyncio.Lock()  # records leave in the order they were made

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
        await self._flush()

    async def read(self) -> bytes:
        """Bytes from the proxy; b"" once it sent close_notify."""
        while True:
            try:
                return self.obj.read(CHUNK)
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLWantReadError:
                await self._flush()  # what reading made (a TLS 1.3 key update's answer)
                await self._fill()

    async def write(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()

    async def write_eof(self) -> None:
        """close_notify: our sending ends, the proxy's answer may still come."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.unwrap()
        await self._flush()

    def close(self) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):  # a close_notify if it fits now, never waited for
            self.obj.unwrap()
        with contextlib.suppress(OSError):
            self.sock.send(self.outgoing.read())
        self.sock.close()

    async def _fill(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, CHUNK)
        if not data:  # a TLS connection ends with close_notify: this may be a truncation
            raise ConnectionResetError("the SOCKS5 proxy closed its TLS connection without close_notify")
        self.incoming.write(data)

    async def _flush(self) -> None:
        async with self.sending:
            while data := self.outgoing.read():
                await asyncio.get_running_loop().sock_sendall(self.sock, data)
