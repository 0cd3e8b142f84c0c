"""GET /health on port 49999 inside the sandbox, answered as E2B's code interpreter answers it
(200, the JSON string "OK"): E2B templates and scripts check it with curl (`wait_for_url`). Only
/health: code runs through the control plane, which answers /health for port 49999 itself too
(server/envd/code.py). It is served once the default context is up, and goes with the driver."""

import asyncio
import sys

PORT = 49999
REQUEST_LIMIT = 1 << 14
HEAD = "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"


async def serve():
    """The listening server, or None if the port cannot be had (a user's server holds it)."""
    for host in (None, "0.0.0.0"):  # every address (IPv6 too), else IPv4 only
        try:
            return await asyncio.start_server(_answer, host=host, port=PORT, reuse_address=True,
                                              limit=REQUEST_LIMIT)
        except OSError as e:
            error = e
    print("sandlot: no /health on port %d: %s" % (PORT, error), file=sys.stderr)
    return None


async def _answer(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        method, path = (head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:2]
        if method in (b"GET", b"HEAD") and path.split(b"?")[0] == b"/health":
            status, kind, body = "200 OK", "application/json", b'"OK"'
        else:
            status, kind, body = "404 Not Found", "text/plain", b"only GET /health is served here\n"
        writer.write((HEAD % (status, kind, len(body))).encode() + (body if method != b"HEAD" else b""))
        await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()
