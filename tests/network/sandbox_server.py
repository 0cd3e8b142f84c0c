"""A server to run inside a sandbox (the template's python3, stdlib only) for the port-proxy tests.

    python3 sandbox_server.py PORT [BIND]

GET /headers: the request's headers as JSON; POST /echo: the body back; GET /stream: three chunks
half a second apart (chunked); GET /ws: a WebSocket echo (text and binary, RFC 6455, unfragmented
frames), which also answers a "close" message by closing with code 4000.
"""

import base64
import hashlib
import json
import socketserver
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, status: int = 200):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/headers":
            return self._send(json.dumps(dict(self.headers)).encode())
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = f"tick {i} {time.time()}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.5)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        self._send(b"hello from the sandbox\n")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(body)

    def _websocket(self):
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + GUID).encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                self.close_connection = True
                return
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = _unmask(self.rfile.read(size), mask)
            if opcode == 8:  # close: answer it, then end the connection
                self._frame(8, data[:2] or struct.pack("!H", 1000))
                self.close_connection = True
                return
            if opcode == 9:  # ping
                self._frame(10, data)
                continue
            if opcode == 1 and data == b"close":
                self._frame(8, struct.pack("!H", 4000))
                self.close_connection = True
                return
            self._frame(opcode, data)

    def _frame(self, opcode: int, data: bytes):
        n = len(data)
        head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else
                                          b"\x7e" + struct.pack("!H", n) if n < 65536 else
                                          b"\x7f" + struct.pack("!Q", n))
        self.wfile.write(head + data)
        self.wfile.flush()


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class Server(ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
    socketserver.TCPServer.allow_reuse_address = True
    Server((bind, port), Handler).serve_forever()
