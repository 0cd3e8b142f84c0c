"""What the egress proxy (egress_proxy.py) reads of a sandbox's connection: the server name of a
TLS ClientHello and the protocols it offers (ALPN), and HTTP/1.x requests, parsed only for their
framing so that each request on a kept-alive connection gets a rule's headers; and the byte relays.
Responses are never parsed. HTTP/2 is egress_h2.py's.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time

IDLE_TIMEOUT = 300.0  # a connection with nothing to relay either way this long is closed
# after the sandbox ended its side between requests, the answer still flowing is relayed until
# the upstream is this quiet (a kept-alive upstream over TLS would otherwise hold it IDLE_TIMEOUT)
QUIET = 1.0
CHUNK = 64 * 1024
# What a request's head and a chunked body may hold to be passed on: servers differ on anything
# else (a bare LF ending a line, a vertical tab taken for a space, "0x5" for a chunk size), and a
# request the upstream frames otherwise than the proxy makes the proxy's next request, with a
# rule's secret, part of a body the sandbox chose (smuggling)
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but HTAB
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP/1\.[01]")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Methods whose content has no defined meaning (RFC 9110 9.3): a server may leave it unread, and
# take it for the next request (Python's http.server does, for a GET)
_BODY_IGNORED = {b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"}


async def relay_http(cr, cw, ur, uw, for_host) -> None:
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
        start = _REQUEST_LINE.fullmatch(lines[0])
        if start is None:
            return False
        fields = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name) or _CTL.search(value):
                return False  # obsolete folding, no colon, a bare LF: not forwarded (a smuggling trick)
            fields.append((name.decode("latin-1"), value.strip(b" \t")))
        lower = [n.lower() for n, _ in fields]
        host = _request_host(start[1], start[2], [v for n, v in fields if n.lower() == "host"])
        if host is None:
            return False
        add = for_host(host) or ()
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
        if start[1] in _BODY_IGNORED and (te or cl and int(next(iter(cl))) > 0):
            # the upstream may read this body as a request, whose own body would then be the next
            # request's head with a rule's secret: the connection takes no more requests
            if uw.can_write_eof():
                uw.write_eof()
            return True


async def _chunked(cr, uw) -> None:
    """A chunked body, passed on only as RFC 9112 7.1 frames it (ValueError else): a chunk size
    Python's int() takes ("0x5", "+5") or a bare LF may be framed otherwise by the upstream."""
    while True:
        line = await cr.readuntil(b"\r\n")
        size, _, ext = line[:-2].partition(b";")
        if not _HEX.fullmatch(size.rstrip(b" \t")) or _CTL.search(ext):
            raise ValueError(f"a chunk line servers may frame otherwise: {line[:40]!r}")
        uw.write(line)
        if int(size, 16) == 0:
            while True:  # trailers, then the empty line
                trailer = await cr.readuntil(b"\r\n")
                if _CTL.search(trailer[:-2]):
                    raise ValueError("a trailer with a control character")
                uw.write(trailer)
                if trailer == b"\r\n":
                    return
        await _copy(cr, uw, int(size, 16))
        if await cr.readexactly(2) != b"\r\n":
            raise ValueError("chunk data not ended by CRLF")
        uw.write(b"\r\n")


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


async def both_ways(cr, cw, ur, uw) -> None:
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


def _request_host(method: bytes, target: bytes, hosts: list[bytes]) -> str | None:
    """The host a request is for, by its Host field and by its target where that names one (the
    authority of an absolute-form target, which a server takes over Host, RFC 9112 3.2.2; a
    CONNECT's); None when they disagree or Host comes twice (a server may go by either)."""
    named = {_host_only(h.decode("latin-1")).rstrip(".") for h in hosts}
    if method == b"CONNECT":
        named.add(_host_only(target.decode("latin-1")).rstrip("."))
    elif b"://" in target and not target.startswith(b"/"):
        authority = re.split(rb"[/?#]", target.split(b"://", 1)[1], maxsplit=1)[0].rsplit(b"@", 1)[-1]
        named.add(_host_only(authority.decode("latin-1")).rstrip("."))
    if len(hosts) > 1 or len(named) > 1:
        return None
    return named.pop() if named else ""


def _host_only(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_http(data: bytes) -> bool:
    method, sep, _ = data.partition(b" ")
    return bool(sep) and method.isalpha() and method.isupper() and len(method) <= 16



def client_hello_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), or None."""
    ext = _hello_extension(data, 0)
    try:  # server_name: list length, then (type 0 = host_name, length, name)
        if ext is None or ext[2] != 0:
            return None
        n = struct.unpack("!H", ext[3:5])[0]
        return ext[5:5 + n].decode("ascii").lower().rstrip(".")
    except (IndexError, struct.error, UnicodeDecodeError):
        return None


def client_hello_alpn(data: bytes) -> list[str]:
    """The protocols a TLS ClientHello offers by ALPN (RFC 7301 3.1), [] if none."""
    ext = _hello_extension(data, 16)
    out: list[str] = []
    try:  # list length, then (length, name) each
        i, end = 2, min(len(ext or b""), 2 + struct.unpack("!H", ext[:2])[0]) if ext else 0
        while i < end:
            out.append(ext[i + 1:i + 1 + ext[i]].decode("ascii"))
            i += 1 + ext[i]
    except (IndexError, struct.error, UnicodeDecodeError):
        return []
    return out


def _hello_extension(data: bytes, kind: int) -> bytes | None:
    """The body of extension `kind` of a TLS ClientHello, or None."""
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
            found, size = struct.unpack("!HH", data[i:i + 4])
            i += 4
            if found == kind:
                return data[i:i + size]
            i += size
    except (IndexError, struct.error):
        return None
    return None
