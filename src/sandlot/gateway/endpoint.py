"""The gateway's one MCP endpoint: streamable HTTP (MCP 2025-03-26 and later) at POST /mcp, every
answer a JSON body (the transport allows JSON instead of an event stream), the tools of all servers
as one list.

- Every request needs `Authorization: Bearer <token>` (401 otherwise, compared in constant time).
- `initialize` opens a session: its answer carries `Mcp-Session-Id`, which every later request must
  send (400 without one, 404 for one the gateway does not know, as the spec says); DELETE ends it.
- GET (a stream of the server's own messages) is not offered: 405, which the spec allows.
- Tools keep their servers' own names, unprefixed; two servers offering one name fail the
  gateway's start. A tools/call goes to the server offering the tool; its answer, an error
  included, is passed on as it is.
- No Origin check (the spec's guard against DNS rebinding): the endpoint listens on the sandbox's
  loopback, reached only through the port proxy, and every request needs the token, which a page in
  a browser cannot know.
"""

from __future__ import annotations

import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .stdio import RpcError, ServerFailed, StdioServer

PATH = "/mcp"
VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")  # handshake versions with streamable HTTP
MAX_BODY = 16 << 20
CALL_TIMEOUT = None  # a tool call runs as long as the client waits


class Gateway:
    """The servers' tools, by name, and the sessions the endpoint opened."""

    def __init__(self, servers: list[StdioServer], token: str):
        self.token = token.encode()
        self.routes: dict[str, StdioServer] = {}
        self.tools: list[dict] = []
        for server in servers:
            for tool in server.tools:
                name = tool.get("name") if isinstance(tool, dict) else None
                if not isinstance(name, str):
                    raise ServerFailed(f"MCP server {server.config.name} lists a tool without a name: {tool!r:.200}")
                other = self.routes.get(name)
                if other is not None:
                    raise ServerFailed(f"MCP servers {other.config.name} and {server.config.name} both offer a tool "
                                     f"named {name}")
                self.routes[name] = server
                self.tools.append(tool)
        self.sessions: set[str] = set()
        self._lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    def initialize(self, params: dict) -> tuple[dict, str]:
        asked = params.get("protocolVersion")
        session = uuid.uuid4().hex
        with self._lock:
            self.sessions.add(session)
        return {"protocolVersion": asked if asked in VERSIONS else VERSIONS[-1],
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "sandlot-mcp-gateway", "version": "1"}}, session

    def end(self, session: str) -> None:
        with self._lock:
            self.sessions.discard(session)

    def answer(self, method: str, params: dict) -> dict:
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": self.tools}
        if method == "tools/call":
            name = params.get("name")
            server = self.routes.get(name) if isinstance(name, str) else None
            if server is None:
                raise RpcError(-32602, f"unknown tool: {name!r}")
            return server.request("tools/call", params, CALL_TIMEOUT)
        raise RpcError(-32601, f"method not found: {method}")


def make_server(gateway: Gateway, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.gateway = gateway  # type: ignore[attr-defined]  # read by _Handler
    return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandlot-mcp-gateway"

    @property
    def gateway(self) -> Gateway:
        return self.server.gateway  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:  # the stdlib's signature; requests are not logged
        pass

    def _reply(self, status: int, body=None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str, rid=None, headers: dict | None = None) -> None:
        self._reply(status, {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}, headers)

    def _admitted(self) -> bool:
        if self.path.split("?", 1)[0] != PATH:
            self._error(404, -32600, f"the MCP endpoint is {PATH}")
            return False
        if not self.gateway.authorized(self.headers.get("Authorization")):
            self._error(401, -32001, "unauthorized: send the sandbox's MCP token (get_mcp_token()) as "
                                     "'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
            return False
        return True

    def _session(self, rid) -> str | None:
        """The request's session, or None after refusing it (400: none given, 404: unknown)."""
        session = self.headers.get("Mcp-Session-Id")
        if not session:
            self._error(400, -32600, "Bad Request: no Mcp-Session-Id header (send initialize first)", rid)
            return None
        if session not in self.gateway.sessions:
            self._error(404, -32001, "Session not found", rid)
            return None
        return session

    def do_GET(self) -> None:
        if self._admitted():
            self._reply(405, None, {"Allow": "POST, DELETE"})

    def do_DELETE(self) -> None:
        if self._admitted() and (session := self._session(None)):
            self.gateway.end(session)
            self._reply(200)

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            return self._error(413 if length > 0 else 400, -32600,
                               f"a message is one body with a Content-Length of at most {MAX_BODY} bytes")
        body = self.rfile.read(length)
        if not self._admitted():
            return
        try:
            message = json.loads(body)
        except ValueError:
            return self._error(400, -32700, "Parse error: the body is not JSON")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return self._error(400, -32600, "Invalid Request: one JSON-RPC 2.0 message per POST")
        rid, method = message.get("id"), message.get("method")
        params: dict = message["params"] if isinstance(message.get("params"), dict) else {}
        if method == "initialize" and "id" in message:
            result, session = self.gateway.initialize(params)
            return self._reply(200, {"jsonrpc": "2.0", "id": rid, "result": result}, {"Mcp-Session-Id": session})
        if self._session(rid) is None:
            return
        if "id" not in message or not isinstance(method, str):  # a notification or a response: accepted
            return self._reply(202)
        try:
            reply = {"jsonrpc": "2.0", "id": rid, "result": self.gateway.answer(method, params)}
        except RpcError as e:
            reply = {"jsonrpc": "2.0", "id": rid, "error": e.error()}
        except Exception as e:  # noqa: BLE001 - a bad answer of a server: the client gets an error, not a reset
            reply = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": f"gateway error: {e!r}"}}
        self._reply(200, reply)
