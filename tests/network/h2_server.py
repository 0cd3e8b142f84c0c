"""The world's HTTP/2 server (hyper-h2 over asyncio), run in the world's namespace by the `h2_world`
fixture: h2 over TLS on ADDRESS:443 (ALPN h2 only) and h2c with prior knowledge on ADDRESS:80.
Prints "ready" once serving.

    python h2_server.py ADDRESS CERT KEY LOG [--tls-port 443] [--plain-port 80]

Each request is logged as a JSON line into LOG when it ends (its :authority, path, headers, the
size and sha256 of its body, its trailers, the connection's client port). Answers, each with
trailers (x-trailer, grpc-status: 0):
- /bytes/N: N bytes of PATTERN repeated; /echo: the request's body back;
- /together/K/GROUP: waits (10 s at most) until K requests of GROUP are open at once, then says
  "together K" (or "alone": they were not concurrent);
- anything else: "h2 world AUTHORITY".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import ssl
import sys
from collections import defaultdict

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (ConnectionTerminated, DataReceived, RemoteSettingsChanged, RequestReceived, StreamEnded,
                       StreamReset, TrailersReceived, WindowUpdated)
from h2.exceptions import ProtocolError, StreamClosedError

PATTERN = bytes(range(256)) * 64
GROUPS: dict[str, set] = defaultdict(set)


def pattern(n: int) -> bytes:
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class Connection:
    def __init__(self, reader, writer, log: str, tls: bool, changed: asyncio.Condition):
        self.reader, self.writer, self.log, self.tls, self.changed = reader, writer, log, tls, changed
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.requests: dict[int, dict] = {}
        self.window = asyncio.Event()
        self.client = writer.get_extra_info("peername")

    async def run(self):
        self.h2.initiate_connection()
        self.flush()
        try:
            while data := await self.reader.read(65536):
                for ev in self.h2.receive_data(data):
                    self.handle(ev)
                self.flush()
        except (ProtocolError, ConnectionError):
            self.flush()
        finally:
            self.writer.close()

    def flush(self):
        self.writer.write(self.h2.data_to_send())

    def handle(self, ev):
        if isinstance(ev, RequestReceived):
            self.requests[ev.stream_id] = {"headers": ev.headers, "body": bytearray(), "trailers": []}
        elif isinstance(ev, DataReceived):
            self.requests[ev.stream_id]["body"] += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, TrailersReceived):
            self.requests[ev.stream_id]["trailers"] = ev.headers
        elif isinstance(ev, StreamEnded):
            asyncio.ensure_future(self.respond(ev.stream_id))
        elif isinstance(ev, StreamReset):
            self.requests.pop(ev.stream_id, None)
            self.window.set()
        elif isinstance(ev, (WindowUpdated, RemoteSettingsChanged)):
            self.window.set()
        elif isinstance(ev, ConnectionTerminated):
            self.writer.close()

    async def respond(self, stream: int):
        req = self.requests[stream]
        pseudo = dict(h for h in req["headers"] if h[0].startswith(":"))
        path, authority = pseudo.get(":path", ""), pseudo.get(":authority", "")
        body = bytes(req["body"])
        with open(self.log, "a") as f:
            f.write(json.dumps({
                "protocol": "h2" if self.tls else "h2c", "authority": authority, "path": path,
                "method": pseudo.get(":method"), "headers": [list(h) for h in req["headers"]],
                "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
                "trailers": [list(h) for h in req["trailers"]], "client": list(self.client)}) + "\n")
        if path.startswith("/bytes/"):
            out = pattern(int(path.rsplit("/", 1)[1]))
        elif path == "/echo":
            out = body
        elif path.startswith("/together/"):
            _, _, k, group = path.split("/", 3)
            async with self.changed:
                GROUPS[group].add((id(self), stream))
                self.changed.notify_all()
                try:
                    await asyncio.wait_for(self.changed.wait_for(lambda: len(GROUPS[group]) >= int(k)), 10)
                    out = f"together {k}\n".encode()
                except asyncio.TimeoutError:
                    out = b"alone\n"
        else:
            out = f"h2 world {authority}\n".encode()
        try:
            self.h2.send_headers(stream, [(":status", "200"), ("content-length", str(len(out))),
                                          ("content-type", "application/octet-stream")])
            self.flush()
            while out:
                n = min(len(out), self.h2.local_flow_control_window(stream), self.h2.max_outbound_frame_size)
                if n == 0:
                    self.window.clear()
                    await self.window.wait()
                    continue
                self.h2.send_data(stream, out[:n])
                out = out[n:]
                self.flush()
                await self.writer.drain()
            self.h2.send_headers(stream, [("x-trailer", f"done {path}"), ("grpc-status", "0")], end_stream=True)
            self.flush()
        except (StreamClosedError, ProtocolError, ConnectionError):
            pass
        finally:
            self.requests.pop(stream, None)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("cert")
    ap.add_argument("key")
    ap.add_argument("log")
    ap.add_argument("--tls-port", type=int, default=443)
    ap.add_argument("--plain-port", type=int, default=80)
    args = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])
    changed = asyncio.Condition()

    def serve(tls: bool):
        return lambda r, w: Connection(r, w, args.log, tls, changed).run()

    await asyncio.start_server(serve(True), args.address, args.tls_port, ssl=ctx)
    await asyncio.start_server(serve(False), args.address, args.plain_port)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin


if __name__ == "__main__":
    asyncio.run(main())
