"""The egress proxy of `network.rules` (egress_rules.py): sets a rule's headers on a sandbox's HTTP
and HTTPS requests to the rule's host, on the host, so the secret never enters the sandbox.

How connections get here: when a sandbox's resolver answers a name some rule names, the answer's
addresses are pinned into the `rulepins` set (network.py), and nftables redirects the sandbox's TCP
to those addresses (any port) to this proxy; SO_ORIGINAL_DST gives the address and port asked for.
Only a connection from a sandbox's own address to an address pinned for it is served; the proxy
dials exactly that address and port, and only if the sandbox's policy lets it reach it (the
question the forward chain would ask, checked again here: the redirect takes the connection off
that chain). Then, by the first bytes the sandbox sends:

- a TLS ClientHello whose SNI is a pinned rule name: the upstream is dialled with TLS first,
  verified (the system trust store plus the server's extra CA file) for that name; if that fails the
  sandbox's connection is closed, never served unverified. Then the sandbox's TLS is terminated with
  a leaf for the name signed by the server's egress CA (which the sandbox trusts), and every request
  on it gets the rule's headers (replacing any of the same name);
- an HTTP/1.x request: each request whose Host names a pinned rule name gets its headers;
- anything else (another SNI, no SNI, a protocol where the server speaks first): relayed as is.

Requests are parsed only for their framing (Content-Length, chunked), so each one on a kept-alive
connection gets the headers; responses are relayed as they come. Runs on an asyncio loop in a thread
of its own, like the resolver (dns.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from python_socks import ProxyError, ProxyTimeoutError

from . import socks
from .egress_rules import headers_for
from .policy import closed

if TYPE_CHECKING:
    from .network import Network

log = logging.getLogger("sandlot.egress")

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0  # a connection with nothing to relay either way this long is closed
# after the sandbox ended its side between requests, the answer still flowing is relayed until
# the upstream is this quiet (a kept-alive upstream over TLS would otherwise hold it IDLE_TIMEOUT)
QUIET = 1.0
HELLO_WAIT = 2.0  # for a ClientHello split over several segments
MAX_HEAD = 64 * 1024  # a request's head (request line and fields)
MAX_CONNECTIONS = 1024  # at once, all sandboxes together
MAX_PER_SANDBOX = 256  # at once, one sandbox's (its neighbours keep the rest)
CHUNK = 64 * 1024


@dataclass
class EgressTls:
    """What the proxy needs for HTTPS: `ca` presents leaves (server/certs.py's LocalCA: its
    server_context(name) and cert_pem), `upstream` verifies the real hosts."""

    ca: Any
    upstream: ssl.SSLContext


def upstream_context(extra_ca_file: Path | None = None) -> ssl.SSLContext:
    """The upstream side: the system's trust store, and the operator's extra CA bundle if given;
    host names checked, TLS 1.2 at least, HTTP/1.1 only (requests are parsed as HTTP/1.x)."""
    ctx = ssl.create_default_context()
    if extra_ca_file is not None:
        ctx.load_verify_locations(cafile=str(extra_ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class RulesProxy:
    def __init__(self, network: "Network", tls: EgressTls, port: int = 0):
        self.network = network
        self.tls = tls
        self._sock = _listen(port)
        self.port = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()
        self._per_source: dict[str, int] = {}
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandlot-egress-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            accept = loop.create_task(self._accept())
            self._ready.set()
            loop.run_forever()
            accept.cancel()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:  # their clean-ups (closing transports) run before the loop goes
                loop.run_until_complete(asyncio.wait(list(self._tasks), timeout=5))
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, (source, _) = await loop.sock_accept(self._sock)
            if len(self._tasks) >= MAX_CONNECTIONS or self._per_source.get(source, 0) >= MAX_PER_SANDBOX:
                conn.close()
                continue
            self._per_source[source] = self._per_source.get(source, 0) + 1
            task = loop.create_task(self._serve(conn, source))
            self._tasks.add(task)
            task.add_done_callback(lambda t, s=source: self._done(t, s))

    def _done(self, task: asyncio.Task, source: str) -> None:
        self._tasks.discard(task)
        left = self._per_source.pop(source, 1) - 1
        if left:
            self._per_source[source] = left

    # ---- one connection ----------------------------------------------------------------------

    async def _serve(self, conn: socket.socket, peer: str) -> None:
        # Sockets handed to a transport are the transport's to close (it does so a loop turn
        # later, also when its set-up fails): closing one here first would free its fd for the
        # next accept while the loop still maps it to the old transport.
        up = None
        writers: list[asyncio.StreamWriter] = []
        handed: list[socket.socket] = []
        try:
            address, port = _original_dst(conn)
            target = self.network.target(peer, address)
            if target is None:  # not a sandbox's connection to an address it may reach and we serve
                log.info("egress proxy: refused %s -> %s:%d (its policy does not pass it here)", peer, address, port)
                return
            attached, names, name = target
            if attached.policy.socks:  # only ever through the user's proxy: failing that, not at all
                try:
                    up = await socks.dial(attached.policy.socks, name or address, port, closed, CONNECT_TIMEOUT)
                except (OSError, asyncio.TimeoutError, ProxyError, ProxyTimeoutError) as e:
                    log.warning("sandbox %s: its SOCKS5 proxy did not connect %s:%d: %s",
                                attached.sandbox_id, name or address, port, e)
                    return
                up.setblocking(False)
            else:
                up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                up.setblocking(False)
                loop = asyncio.get_running_loop()
                await asyncio.wait_for(loop.sock_connect(up, (address, port)), CONNECT_TIMEOUT)
            hello = await _first_bytes(conn, up)
            rules = attached.policy.rules
            if hello[:1] == b"\x16":
                name = client_hello_sni(hello)
                if name in names and headers_for(rules, name) is not None:
                    await self._tls(conn, up, name, lambda _host: headers_for(rules, name), writers, handed)
                    return
            handed += [conn, up]
            cr, cw = await asyncio.open_connection(sock=conn, limit=MAX_HEAD)
            writers.append(cw)
            ur, uw = await asyncio.open_connection(sock=up)
            writers.append(uw)
            if _is_http(hello):
                await _relay_http(cr, cw, ur, uw, lambda host: headers_for(rules, host) if host in names else None)
            else:
                await _both_ways(cr, cw, ur, uw)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ssl.SSLError, ValueError) as e:
            log.debug("egress proxy: %s: %s", peer, e)
        except Exception:  # a bug: said loudly, this connection ends, the others go on
            log.exception("egress proxy: connection from %s failed", peer)
        finally:
            for w in writers:
                w.close()
            for w in writers:
                try:
                    await w.wait_closed()
                except (OSError, ssl.SSLError):
                    pass
            for sock in (conn, up):
                if sock is not None and sock not in handed:
                    sock.close()

    async def _tls(self, conn: socket.socket, up: socket.socket, name: str,
                   for_host: Callable[[str], Any], writers: list, handed: list) -> None:
        # the upstream first: if its certificate does not verify for the name, the sandbox's
        # handshake never completes and nothing is sent anywhere
        handed.append(up)
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(
                sock=up, ssl=self.tls.upstream, server_hostname=name), HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, ssl.CertificateError) as e:
            log.warning("egress proxy: %s did not verify (%s): connection closed", name, e)
            return
        writers.append(uw)
        loop = asyncio.get_running_loop()
        cr = asyncio.StreamReader(limit=MAX_HEAD)
        protocol = asyncio.StreamReaderProtocol(cr)
        handed.append(conn)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, conn, ssl=self.tls.ca.server_context(name), ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        cw = asyncio.StreamWriter(transport, protocol, cr, loop)
        writers.append(cw)
        await _relay_http(cr, cw, ur, uw, for_host)


# ---- HTTP/1.x, requests only ---------------------------------------------------------------------

async def _relay_http(cr, cw, ur, uw, for_host) -> None:
    """Requests from the sandbox (cr) to upstream (uw), each with the headers `for_host(host)`
    gives; responses (ur) back to the sandbox (cw) as they come."""
    moved = [time.monotonic()]  # when the last answer bytes passed
    down = asyncio.ensure_future(_pipe(ur, cw, moved))
    up = asyncio.ensure_future(_requests(cr, uw, for_host))
    try:
        done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and not up.exception() and up.result():  # the sandbox ended: let the answer finish
            while not down.done() and time.monotonic() - moved[0] < QUIET:
                await asyncio.wait({down}, timeout=QUIET)
    finally:
        await _end(down, up)


async def _requests(cr, uw, for_host) -> bool:
    """True when the sandbox ended cleanly between requests, False on a malformed request."""
    while True:
        try:
            head = await asyncio.wait_for(cr.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.IncompleteReadError as e:
            if not e.partial and uw.can_write_eof():
                uw.write_eof()
            return not e.partial
        lines = head[:-4].split(b"\r\n")
        fields = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in b" \t":
                return False  # obsolete folding, no colon: not forwarded (a smuggling trick)
            fields.append((name.decode("latin-1"), value.strip()))
        lower = [n.lower() for n, _ in fields]
        host = next((v.decode("latin-1") for n, v in fields if n.lower() == "host"), "")
        add = for_host(_host_only(host)) or ()
        if add:
            replaced = {n.lower() for n, _ in add}
            fields = [f for f in fields if f[0].lower() not in replaced] + [(n, v.encode()) for n, v in add]
        te = [v for n, v in fields if n.lower() == "transfer-encoding"]
        cl = {v for n, v in fields if n.lower() == "content-length"}
        if te:
            if not te[-1].lower().rsplit(b",", 1)[-1].strip() == b"chunked":
                return False
            fields = [f for f in fields if f[0].lower() != "content-length"]  # chunked wins (RFC 9112)
        elif len(cl) > 1 or (cl and not next(iter(cl)).isdigit()):
            return False
        uw.write(lines[0] + b"\r\n" + b"".join(n.encode("latin-1") + b": " + v + b"\r\n" for n, v in fields)
                 + b"\r\n")
        if te:
            await _chunked(cr, uw)
        elif cl:
            await _copy(cr, uw, int(next(iter(cl))))
        await uw.drain()
        if "upgrade" in lower or lines[0].upper().startswith(b"CONNECT "):
            await _pipe(cr, uw)  # a WebSocket or tunnel: its bytes are no longer HTTP requests
            return True


async def _chunked(cr, uw) -> None:
    while True:
        line = await cr.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        uw.write(line)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await cr.readuntil(b"\r\n")
                uw.write(trailer)
                if trailer == b"\r\n":
                    return
        await _copy(cr, uw, size + 2)


async def _copy(reader, writer, n: int) -> None:
    while n > 0:
        data = await reader.readexactly(min(n, CHUNK))
        writer.write(data)
        await writer.drain()
        n -= len(data)


async def _pipe(reader, writer, moved: list | None = None) -> None:
    while data := await asyncio.wait_for(reader.read(CHUNK), IDLE_TIMEOUT):
        writer.write(data)
        await writer.drain()
        if moved is not None:
            moved[0] = time.monotonic()
    if writer.can_write_eof():
        writer.write_eof()


async def _both_ways(cr, cw, ur, uw) -> None:
    """Both directions until both end (half-closes passed on), or one fails."""
    tasks = [asyncio.ensure_future(_pipe(cr, uw)), asyncio.ensure_future(_pipe(ur, cw))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        await _end(*tasks)


async def _end(*tasks: asyncio.Future) -> None:
    """Cancel what still runs and collect every outcome (a failure is the connection's end, not
    an error to log)."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _host_only(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_http(data: bytes) -> bool:
    method, sep, _ = data.partition(b" ")
    return bool(sep) and method.isalpha() and method.isupper() and len(method) <= 16


# ---- sockets -------------------------------------------------------------------------------------

def _listen(port: int) -> socket.socket:
    """The proxy's socket on every address (the rules admit only redirected sandbox connections):
    `port` if free (the same as before a restart), else any."""
    for candidate in (port, 0) if port else (0,):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", candidate))
            sock.listen(512)
            sock.setblocking(False)
            return sock
        except OSError:
            sock.close()
    raise OSError("no free port for the egress proxy")


def _original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, = struct.unpack("!H", raw[2:4])
    return socket.inet_ntoa(raw[4:8]), port


async def _first_bytes(conn: socket.socket, up: socket.socket) -> bytes:
    """What the sandbox sends first (peeked: it stays in the socket), or b"" when the server speaks
    first. A TLS record is waited for whole (HELLO_WAIT at most), for its SNI."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future = loop.create_future()
    for sock, who in ((conn, "client"), (up, "server")):
        loop.add_reader(sock.fileno(), lambda w=who: ready.done() or ready.set_result(w))
    try:
        who = await asyncio.wait_for(ready, IDLE_TIMEOUT)
    finally:
        loop.remove_reader(conn.fileno())
        loop.remove_reader(up.fileno())
    if who == "server":
        return b""
    deadline = time.monotonic() + HELLO_WAIT
    while True:
        data = conn.recv(16384, socket.MSG_PEEK)
        if data[:1] != b"\x16" or len(data) < 5:
            return data
        if len(data) >= 5 + struct.unpack("!H", data[3:5])[0] or len(data) >= 16384 or time.monotonic() > deadline:
            return data
        await asyncio.sleep(0.01)


def client_hello_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), or None."""
    try:
        if data[0] != 0x16 or data[5] != 0x01:
            return None
        end = min(len(data), 5 + struct.unpack("!H", data[3:5])[0])
        i = 5 + 4 + 2 + 32  # handshake header, version, random
        i += 1 + data[i]  # session id
        i += 2 + struct.unpack("!H", data[i:i + 2])[0]  # cipher suites
        i += 1 + data[i]  # compression methods
        ext_end = min(end, i + 2 + struct.unpack("!H", data[i:i + 2])[0])
        i += 2
        while i + 4 <= ext_end:
            kind, size = struct.unpack("!HH", data[i:i + 4])
            i += 4
            if kind == 0:  # server_name: list length, then (type 0 = host_name, length, name)
                if data[i + 2] != 0:
                    return None
                n = struct.unpack("!H", data[i + 3:i + 5])[0]
                return data[i + 5:i + 5 + n].decode("ascii").lower().rstrip(".")
            i += size
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None
