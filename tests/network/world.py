"""The sandboxes' outside world for the network tests, run inside a network namespace of its own
(`ip netns exec`): HTTP on port 80 of every address given, HTTPS on 443 of the first, and a DNS
server (dnslib) on port 53 of --dns answering from a fixed zone. Prints "ready" once serving.

    python world.py --http 198.18.0.2 198.18.0.3 --dns 198.18.0.53 --zone zone.json --cert c.pem --key k.pem

Each HTTP answer says which address served it ("world 198.18.0.2"), echoes the request's headers (and a POST's body) as
JSON lines into --log (with the address and port that served it and the client's address), and
/bytes/N answers N bytes (throughput and bandwidth-cap tests).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSServer


def handler(log_path: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self, body: bytes | None = None):
            with open(log_path, "a") as f:
                f.write(json.dumps({"host": self.server.server_address[0], "port": self.server.server_address[1],
                                    "client": self.client_address[0], "path": self.path,
                                    "headers": dict(self.headers),
                                    **({"body": body.decode()} if body is not None else {})}) + "\n")
            if self.path.startswith("/bytes/"):
                body = b"x" * int(self.path.rsplit("/", 1)[1])
            else:
                body = f"world {self.server.server_address[0]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    body += self.rfile.read(size + 2)[:-2]
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET(body)

        def log_message(self, *args):
            pass

    return Handler


class Zone(BaseResolver):
    """Names to addresses (a list: several A records); anything else NXDOMAIN."""

    def __init__(self, zone: dict[str, list[str]], ttl: int):
        self.zone, self.ttl = zone, ttl

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name not in self.zone:
            reply.header.rcode = 3
        elif request.q.qtype == QTYPE.A:
            for address in self.zone[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=self.ttl))
        return reply


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", nargs="+", required=True)
    ap.add_argument("--dns", required=True)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    servers = [ThreadingHTTPServer((address, 80), handler(args.log)) for address in args.http]
    tls = ThreadingHTTPServer((args.http[0], 443), handler(args.log))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    servers.append(tls)
    with open(args.zone) as f:
        zone = json.load(f)
    dns = [DNSServer(Zone(zone, ttl=300), address=args.dns, port=53, tcp=tcp) for tcp in (False, True)]
    for d in dns:
        d.start_thread()
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
