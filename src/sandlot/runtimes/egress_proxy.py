"""The egress proxy of `network.rules` (egress_rules.py): sets a rule's headers on a sandbox's HTTP
and HTTPS requests to the rule's host, on the host, so the secret never enters the sandbox.

How connections get here: when a sandbox's resolver answers a name some rule names, the answer's
addresses are pinned into the `rulepins` set (network.py), and nftables redirects the sandbox's TCP
to those addresses (any port) to this proxy, as it does TCP to an address inside a rule keyed by
an address or CIDR (`ruleaddrs`); SO_ORIGINAL_DST gives the address and port asked for.
Only a connection from a sandbox's own address to an address pinned for it is served; the proxy
dials exactly that address and port, and only if the sandbox's policy lets it reach it (the
question the forward chain would ask, checked again here: the redirect takes the connection off
that chain). Then, by the first bytes the sandbox sends:

- a TLS ClientHello whose SNI is a pinned rule name: the upstream is dialled with TLS first,
  verified (the system trust store plus the server's extra CA file) for that name; if that fails the
  sandbox's connection is closed, never served unverified. Then the sandbox's TLS is terminated with
  a leaf for the name signed by the server's egress CA (which the sandbox trusts), and every request
  on it for the name (its Host, or :authority) gets the rule's headers (replacing any of the same
  name): one for another host, which a shared front end would route there, gets none. HTTP/2 when
  both ends want it: a sandbox offering h2 (ALPN) has the upstream dialled offering h2 and
  HTTP/1.1, and is offered what the upstream chose, h2 (relayed by egress_h2.py) or HTTP/1.1 only;
- a TLS ClientHello to an address inside a rule's address key (its SNI no rule name): the same,
  verified for the SNI's name, or for the address itself when there is no SNI (an IP SAN), and
  every request gets the headers, whatever its Host or :authority;
- an HTTP/1.x request: each request whose Host names a pinned rule name gets its headers, any
  other the headers of a rule keyed by the address dialled, if one holds it; HTTP/2 with prior
  knowledge (h2c, cleartext gRPC) likewise, by each request's :authority. An h2c Upgrade is
  relayed as is after its first request (which gets the headers);
- anything else (another SNI, no SNI, a protocol where the server speaks first): relayed as is.
  An HTTP/2 server's SETTINGS, sent on connect (RFC 9113 3.4), is not taken for a server that
  speaks first: the sandbox's preface is waited for.

HTTP/1 requests are parsed only for their framing (egress_http.py), so each one on a kept-alive
connection gets the headers, and passed on only if framed unambiguously (else the connection
ends); responses are relayed as they come. Runs on an asyncio loop in a thread
of its own, like the resolver (dns.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from python_socks import ProxyError, ProxyTimeoutError

from . import socks
from .budgets import TEAM_SHARE, Budget
from .egress_h2 import PREFACE, relay_h2
from .egress_http import IDLE_TIMEOUT, both_ways, client_hello_alpn, client_hello_sni, is_http, relay_http
from .egress_rules import headers_for, headers_for_address
from .policy import closed

log = logging.getLogger("sandlot.egress")

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
HELLO_WAIT = 2.0  # for a ClientHello split over several segments
MAX_HEAD = 64 * 1024  # a request's head (request line and fields)
MAX_CONNECTIONS = 1024  # at once, all sandboxes together
MAX_PER_SANDBOX = 256  # at once, one sandbox's (its neighbours keep the rest)
# and one team's sandboxes together hold at most TEAM_SHARE of them (budgets.py says why)


@dataclass
class EgressTls:
    """What the proxy needs for HTTPS: `ca` presents leaves (server/certs.py's LocalCA: its
    server_context(name) and cert_pem), made by `make_ca` at its first use, so a server whose
    sandboxes never have rules keeps no CA; `upstream` verifies the real hosts, offering HTTP/1.1
    only, `upstream_h2` the same offering h2 too (for sandboxes that offer h2; None: never h2)."""

    make_ca: Callable[[], Any]
    upstream: ssl.SSLContext
    upstream_h2: ssl.SSLContext | None = None
    # identity(sandbox_id, headers): the headers with workload identity placeholders replaced by
    # tokens minted now (server/identity.py); ValueError for a token the sandbox does not have
    identity: Callable[[str, Any], Any] | None = None
    _ca: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ca(self) -> Any:
        with self._lock:
            if self._ca is None:
                self._ca = self.make_ca()
            return self._ca


def upstream_context(extra_ca_file: Path | None = None, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """The upstream side: the system's trust store, and the operator's extra CA bundle if given;
    host names checked, TLS 1.2 at least, offering `alpn`: HTTP/1.1 only for a sandbox that did
    not offer h2, ("h2", "http/1.1") for one that did (the upstream's choice is then offered to it)."""
    ctx = ssl.create_default_context()
    if extra_ca_file is not None:
        ctx.load_verify_locations(cafile=str(extra_ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class RulesProxy:
    def __init__(self, target: Callable[[str, str], Any], tls: EgressTls, port: int = 0,
                 team_of: Callable[[str], str | None] = lambda source: None, team_share: float = TEAM_SHARE):
        """`target(source, ip)`: what a redirected connection is (network.py's Network.target);
        `team_of(source)`: the team of the sandbox at that address, whose `team_share` of the
        connections its sandboxes may hold together."""
        self._target, self._team_of = target, team_of
        self.tls = tls
        self._sock = _listen(port)
        self.port = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: dict[asyncio.Task, str] = {}  # connection -> the sandbox address it came from
        self._held = Budget(MAX_CONNECTIONS, MAX_PER_SANDBOX, team_share)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandlot-egress-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        accept = loop.create_task(self._accept())  # kept: the loop holds its tasks weakly
        try:
            self._ready.set()
            loop.run_forever()
        finally:
            # the acceptor, the connections and the relays of TLS hops to SOCKS5 proxies (socks.py)
            # end (their clean-ups close transports) before the loop goes; a task left pending is
            # logged as destroyed
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._sock.close()

    def drop(self, source: str, wait: bool = True) -> None:
        """End the connections of the sandbox at `source`: its policy changed (what they were
        served under, rules and secrets included, no longer holds; its next ones are served
        under the new one), or it is gone. `wait`: until they have ended (at most 5 s)."""
        if self._loop is None:
            return
        ended = asyncio.run_coroutine_threadsafe(self._drop(source), self._loop)
        if wait:
            try:
                ended.result(5)
            except (concurrent.futures.TimeoutError, RuntimeError) as e:
                log.warning("egress proxy: connections from %s did not end in time: %s", source, e)

    async def _drop(self, source: str) -> None:
        tasks = [t for t, s in self._tasks.items() if s == source]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=4)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, (source, _) = await loop.sock_accept(self._sock)
            team = self._team_of(source)
            if not self._held.take(source, team):
                conn.close()
                continue
            task = loop.create_task(self._serve(conn, source))
            self._tasks[task] = source
            task.add_done_callback(lambda t, s=source, g=team: self._done(t, s, g))

    def _done(self, task: asyncio.Task, source: str, team: str | None) -> None:
        self._tasks.pop(task, None)
        self._held.give_back(source, team)

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
            target = self._target(peer, address)
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
            by_address = headers_for_address(rules, address)  # a rule keyed by an address holding it

            def for_host(host: str):  # a pinned rule name's headers, else the address rule's
                found = headers_for(rules, host) if host in names else None
                return self._minted(attached.sandbox_id, by_address if found is None else found)

            if hello[:1] == b"\x16":
                sni = client_hello_sni(hello)
                wants_h2 = "h2" in client_hello_alpn(hello)
                if sni in names and (headers := headers_for(rules, sni)) is not None:
                    await self._tls(conn, up, sni, lambda: self._minted(attached.sandbox_id, headers), True,
                                    wants_h2, writers, handed)
                    return
                if by_address is not None:  # verified for the name asked, or for the address itself
                    await self._tls(conn, up, sni or address, lambda: self._minted(attached.sandbox_id, by_address),
                                    False, wants_h2, writers, handed)
                    return
            handed += [conn, up]
            cr, cw = await asyncio.open_connection(sock=conn, limit=MAX_HEAD)
            writers.append(cw)
            ur, uw = await asyncio.open_connection(sock=up)
            writers.append(uw)
            if hello.startswith(PREFACE[:14]):  # "PRI * HTTP/2.0": h2c with prior knowledge
                await relay_h2(cr, cw, ur, uw, for_host)
            elif is_http(hello):
                await relay_http(cr, cw, ur, uw, for_host)
            else:
                await both_ways(cr, cw, ur, uw)
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

    def _minted(self, sandbox_id: str, headers):
        """Rule headers as sent: workload identity placeholders replaced by fresh tokens. A request
        whose token cannot be minted is not sent (ValueError ends the connection)."""
        if headers and self.tls.identity is not None:
            return self.tls.identity(sandbox_id, headers)
        return headers

    async def _tls(self, conn: socket.socket, up: socket.socket, name: str, headers: Callable[[], Any],
                   only_name: bool, wants_h2: bool, writers: list, handed: list) -> None:
        """`headers()`: what a request gets; `only_name`: only requests for `name` get them."""
        # the upstream first: if its certificate does not verify for the name, the sandbox's
        # handshake never completes and nothing is sent anywhere
        handed.append(up)
        wants_h2 = wants_h2 and self.tls.upstream_h2 is not None
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(
                sock=up, ssl=self.tls.upstream_h2 if wants_h2 else self.tls.upstream, server_hostname=name),
                HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, ssl.CertificateError) as e:
            log.warning("egress proxy: %s did not verify (%s): connection closed", name, e)
            return
        writers.append(uw)
        # the sandbox is offered what the upstream chose (h2, or HTTP/1.1 only); no ALPN to a
        # sandbox that offered no h2, as before
        h2 = wants_h2 and uw.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        alpn = ("h2",) if h2 else ("http/1.1",) if wants_h2 else ()
        loop = asyncio.get_running_loop()
        cr = asyncio.StreamReader(limit=MAX_HEAD)
        protocol = asyncio.StreamReaderProtocol(cr)
        handed.append(conn)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, conn, ssl=self.tls.ca.server_context(name, alpn=alpn),
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        cw = asyncio.StreamWriter(transport, protocol, cr, loop)
        writers.append(cw)

        # a name's rule: only requests for `name` (a client may send others on one connection, by
        # Host or :authority, which a shared front end routes by); an address's rule: every request
        def for_host(host: str):
            return headers() if host == name or not only_name else None

        if not h2:
            await relay_http(cr, cw, ur, uw, for_host)
        elif transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2":
            await relay_h2(cr, cw, ur, uw, for_host)


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
    first. A TLS record is waited for whole (HELLO_WAIT at most), for its SNI. An HTTP/2 server
    sends its SETTINGS without waiting for the client (RFC 9113 3.4): an h2c client's preface comes
    all the same, and is waited for (HELLO_WAIT at most)."""
    who = await _readable_first(conn, up, IDLE_TIMEOUT)
    if who == "server" and _h2_settings(up.recv(9, socket.MSG_PEEK)):
        try:
            who = await _readable_first(conn, None, HELLO_WAIT)
        except asyncio.TimeoutError:
            return b""
    if who == "server":
        return b""
    return await _whole_record(conn)


async def _whole_record(conn: socket.socket) -> bytes:
    """The sandbox's first bytes, peeked; a TLS record (a ClientHello split over segments, which a
    client may send one at a time) once it is all there, up to 16 KiB, or what came in HELLO_WAIT.
    Peeked bytes leave the socket readable, so a wait for "readable" would return at once: SO_RCVLOWAT
    makes it readable only once the bytes still missing are there (or at its end), and the loop wakes
    when they arrive, not every few milliseconds to look."""
    deadline = time.monotonic() + HELLO_WAIT
    data, lowat = b"", 1
    try:
        while True:
            before, data = data, conn.recv(16384, socket.MSG_PEEK)
            if data[:1] != b"\x16":
                return data
            need = 5 if len(data) < 5 else min(5 + struct.unpack("!H", data[3:5])[0], 16384)
            left = deadline - time.monotonic()
            # whole; or woken with nothing more (the sandbox ended its side); or out of time
            if len(data) >= need or len(data) == len(before) or left <= 0:
                return data
            if need != lowat:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
                lowat = need
            try:
                await _readable_first(conn, None, left)
            except asyncio.TimeoutError:
                return conn.recv(16384, socket.MSG_PEEK)
    finally:
        if lowat != 1:  # the relays read whatever comes
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


async def _readable_first(conn: socket.socket, up: socket.socket | None, timeout: float) -> str:
    """"client" or "server": whichever socket has bytes to read first (TimeoutError past `timeout`)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future = loop.create_future()
    watched = [(conn, "client")] + ([(up, "server")] if up is not None else [])
    for sock, who in watched:
        loop.add_reader(sock.fileno(), lambda w=who: ready.done() or ready.set_result(w))
    try:
        return await asyncio.wait_for(ready, timeout)
    finally:
        for sock, _ in watched:
            loop.remove_reader(sock.fileno())


def _h2_settings(head: bytes) -> bool:
    """Whether `head` is the header of an HTTP/2 SETTINGS frame that is no ACK, on stream 0: an h2
    server's first frame."""
    return (len(head) == 9 and head[3] == 0x4 and head[4] == 0 and head[5:9] == bytes(4)
            and int.from_bytes(head[:3], "big") % 6 == 0)
