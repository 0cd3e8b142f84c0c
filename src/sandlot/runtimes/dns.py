"""The sandboxes' resolver: what lets host names in allow_out pass on the wire.

Every DNS packet a sandbox sends (udp/tcp 53, to any address) is redirected by nftables to this
server's resolver, on an asyncio loop in a thread of its own. It knows the sandbox by its source
address (the rules drop spoofed ones) and answers by its policy:

- a name allow_out names: forwarded to the sandbox's upstreams (dns_servers, else the host's); the
  A records of the answer are pinned into the sandbox's nftables set before it gets the answer, so
  the connection that follows passes;
- a name deny_out names: REFUSED (its addresses are pinned as denied, so a later hard-coded use of
  them fails too where the default would pass them);
- any other name: forwarded as is when the policy's default is open, else REFUSED;
- and an answer for a name a header rule (`network.rules`) names is also pinned into the set that
  redirects the sandbox's TCP to the egress proxy (egress_proxy.py).

Questions in flight and TCP connections are bounded, all sandboxes together, each sandbox's
(MAX_IN_FLIGHT_PER_SANDBOX, MAX_TCP_PER_SANDBOX) and each team's (a share of the whole, budgets.py),
so that neither one sandbox nor one team's sandboxes can starve the others.
AAAA questions get an empty answer (sandboxes have IPv4 only). Answers are never trusted beyond
pinning: an allowed name that resolves into a closed range (DNS rebinding) is still dropped by the
rules, which check closed ranges before pins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from .attachment import Attached
from .budgets import TEAM_SHARE, Budget
from .egress_rules import headers_for
from .policy import name_matches

log = logging.getLogger("sandlot.dns")

Pin = Callable[..., None]

UPSTREAM_TIMEOUT = 2.0  # per upstream server and try
MAX_IN_FLIGHT = 256  # questions being answered at once, all sandboxes together
# one sandbox's share (its neighbours keep the rest): one asking for names its upstream is slow to
# answer (each holds a slot UPSTREAM_TIMEOUT per upstream) would otherwise fill them all
MAX_IN_FLIGHT_PER_SANDBOX = 32
# TCP connections at once, all sandboxes together and one sandbox's: each holds a file of the
# server's process (a question every few seconds keeps it), which the API and every sandbox share
MAX_TCP = 256
MAX_TCP_PER_SANDBOX = 16
# and one team's sandboxes together hold at most TEAM_SHARE of each (budgets.py says why)
EVERYTHING = ipaddress.IPv4Network("0.0.0.0/0")


def host_nameservers(path: str = "/etc/resolv.conf") -> tuple[str, ...]:
    """The host's own IPv4 resolvers: the default upstreams."""
    found = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        found.append(str(ipaddress.IPv4Address(parts[1])))
                    except ValueError:
                        continue
    except OSError:
        pass
    return tuple(found)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, resolver: "Resolver") -> None:
        self.resolver = resolver

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.resolver.spawn(self._answer(data, addr), addr[0])

    async def _answer(self, data: bytes, addr) -> None:
        reply = await self.resolver.answer(data, addr[0])
        if reply is not None:
            self.transport.sendto(reply, addr)


class Resolver:
    def __init__(self, pin: Pin, pin_rule: Pin, port: int = 0, team_share: float = TEAM_SHARE):
        """`pin(attached, name, ip, until, denied=)`: let a sandbox reach an answer (network.py's
        Network.pin) before it is sent; `pin_rule(...)`: the same for a name a header rule names;
        `team_share`: of each budget, what one team's sandboxes may hold together."""
        self._pin, self._pin_rule = pin, pin_rule
        self.default_upstreams = host_nameservers()
        self._by_address: dict[str, Attached] = {}
        self._udp, self._tcp = _bind_pair(port)
        self.port = self._udp.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()
        self._in_flight = Budget(MAX_IN_FLIGHT, MAX_IN_FLIGHT_PER_SANDBOX, team_share)  # questions over UDP
        self._tcp_held = Budget(MAX_TCP, MAX_TCP_PER_SANDBOX, team_share)  # TCP connections open
        self._ready = threading.Event()

    # ---- sandboxes ---------------------------------------------------------------------------

    def register(self, address: str, attached: Attached) -> None:
        self._by_address[address] = attached

    def unregister(self, address: str) -> None:
        self._by_address.pop(address, None)

    def attached(self, address: str) -> Attached | None:
        return self._by_address.get(address)

    def team_of(self, address: str) -> str | None:
        """The team of the sandbox at `address` (None: none there, or of no team)."""
        a = self._by_address.get(address)
        return a.team if a is not None else None

    # ---- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandlot-dns", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
            self._ready.set()
            loop.run_forever()
        finally:
            for task in list(self._tasks):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: _Listener(self), sock=self._udp)
        await asyncio.start_server(self._tcp_client, sock=self._tcp)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._udp.close()
        self._tcp.close()

    def spawn(self, coro, source: str) -> None:
        # a flood: dropped (the sandbox's resolver library retries)
        team = self.team_of(source)
        if not self._in_flight.take(source, team):
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, source, team))

    def _done(self, task: asyncio.Task, source: str, team: str | None) -> None:
        self._tasks.discard(task)
        self._in_flight.give_back(source, team)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        team = self.team_of(peer)
        if not self._tcp_held.take(peer, team):
            writer.close()  # its file goes now (a client falls back to UDP or retries)
            return
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))[0]
                data = await asyncio.wait_for(reader.readexactly(size), 10)
                reply = await self.answer(data, peer, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, struct.error):
            pass
        finally:
            self._tcp_held.give_back(peer, team)
            writer.close()

    # ---- answering ---------------------------------------------------------------------------

    async def answer(self, data: bytes, source: str, tcp: bool = False) -> bytes | None:
        """The reply to one question from `source`; None to stay silent (unknown source, junk)."""
        attached = self._by_address.get(source)
        if attached is None:
            return None
        try:
            query = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, struct.error):
            return None
        if query.header.qr or not query.questions:
            return None
        name = str(query.q.qname).rstrip(".").lower()
        policy = attached.policy
        allowed = name_matches(name, policy.names("allow"))
        denied = not allowed and name_matches(name, policy.names("deny"))
        open_default = policy.internet and EVERYTHING not in policy.networks("deny")
        if not (allowed or denied or open_default):
            return _reply(query, RCODE.REFUSED)
        if query.q.qtype == QTYPE.AAAA and not denied:
            return _reply(query, RCODE.NOERROR)
        upstreams = policy.dns_servers if policy.dns_servers is not None else self.default_upstreams
        raw = await self._forward(data, upstreams, tcp)
        if raw is None:
            return _reply(query, RCODE.SERVFAIL)
        ruled = not denied and headers_for(policy.rules, name) is not None
        if allowed or denied or ruled:
            try:
                reply = DNSRecord.parse(raw)
            except (DNSError, ValueError, IndexError, struct.error):
                return _reply(query, RCODE.SERVFAIL)
            now = time.time()
            for rr in reply.rr:
                if rr.rtype == QTYPE.A:
                    if allowed or denied:
                        self._pin(attached, name, str(rr.rdata), now + rr.ttl, denied=denied)
                    if ruled:
                        self._pin_rule(attached, name, str(rr.rdata), now + rr.ttl)
            if denied:
                return _reply(query, RCODE.REFUSED)
        return raw

    async def _forward(self, data: bytes, upstreams, tcp: bool) -> bytes | None:
        query_id = data[:2]
        for server in upstreams:
            try:
                raw = await self._udp_query(data, server)
                if raw is not None and len(raw) > 2 and raw[2] & 0x02 and tcp:  # truncated: ask over TCP
                    raw = await self._tcp_query(data, server)
            except (OSError, asyncio.TimeoutError):
                continue
            if raw is not None and raw[:2] == query_id:
                return raw
        return None

    @staticmethod
    async def _udp_query(data: bytes, server: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_Upstream, remote_addr=(server, 53))
        try:
            transport.sendto(data)
            return await asyncio.wait_for(proto.answer, UPSTREAM_TIMEOUT)
        finally:
            transport.close()

    @staticmethod
    async def _tcp_query(data: bytes, server: str) -> bytes | None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(server, 53), UPSTREAM_TIMEOUT)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), UPSTREAM_TIMEOUT))[0]
            return await asyncio.wait_for(reader.readexactly(size), UPSTREAM_TIMEOUT)
        finally:
            writer.close()


def _reply(query: DNSRecord, rcode: int) -> bytes:
    reply = query.reply()
    reply.header.rcode = rcode
    return reply.pack()


def _bind_pair(port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port of every address (the rules admit sandboxes only):
    `port` if free, else any."""
    for attempt in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind(("0.0.0.0", port if attempt == 0 else 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("0.0.0.0", udp.getsockname()[1]))
            tcp.listen(128)
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
    raise OSError("no free port for the sandboxes' resolver")
