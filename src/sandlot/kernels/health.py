"""GET /health on port 49999 inside the sandbox, answered as E2B's code interpreter answers it
(200, the JSON string "OK"): E2B templates and scripts check it with curl (`wait_for_url`). Only
/health: code runs through the control plane, which answers /health for port 49999 itself too
(server/envd/code.py). It is served once the default context is up, and goes with the driver."""

import asyncio
import sys

PORT = 49999
REQUEST_LIMIT = 1 << 14
BIND_ATTEMPTS = 10
HEAD = "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"


async def serve():
    """Listen on PORT; the server, or None once it is clear the port cannot be had (a user's server
    holds it). An earlier driver killed a moment ago may still hold it: tried again for a while."""
    for _ in range(BIND_ATTEMPTS):
        for host in (None, "0.0.0.0"):  # every address (IPv6 too), else IPv4 only
            try:
                return await asyncio.start_server(_answer, host=host, port=PORT, reuse_address=True,
                                                  limit=REQUEST_LIMIT)
            except OSError as e:
                error = e
        await asyncio.sleep(1)
    print("sandlot: no /health on port %d: %s" % (PORT, error), file=sys.stderr)
    return None


def stop(serving):
    """Stop serve()'s task: its server if it has one, else its attempts."""
    if not serving.done():
        serving.cancel()
    elif not serving.cancelled() and serving.exception() is None and serving.result() is not None:
        serving.result().close()


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
