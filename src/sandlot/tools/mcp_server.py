"""The tool registry as an MCP server (the official `mcp` SDK's low-level `Server`), over stdio or
streamable HTTP, standalone (`sandlot mcp`) or mounted in `sandlot serve` at /mcp.

Tools are the toolset's (`tools/list`, `tools/call`; a failed call is a result with `isError`, as
MCP wants). Resources are the caller's sandboxes: `sandlot://sandboxes/{id}` (its info as JSON) and
the template `sandlot://sandboxes/{id}/files/{path}` (a file's contents).

Which sandbox a tool call acts on (`Sandboxes`): a fixed one (`sandbox_id`), else the sandbox of a
session through the SandboxService (namespace "mcp", so it is found again after a restart): on
stdio the session given (`session`) or a fresh one released when the server stops; over HTTP the
`X-Sandlot-Session` header, else the MCP session id, else "default", per API key. Over HTTP the
caller's API key (X-API-Key or Authorization: Bearer) is the one the tools use on the sandlot
server: every caller acts with its own rights.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import mcp.types as types
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import _exceptions as E
from ..client import AsyncSandbox
from ..client import AsyncSandboxService
from ._toolset import AsyncToolset

NAMESPACE = "mcp"
SESSION_HEADER = "x-sandlot-session"
URI = "sandlot://sandboxes/"


def request_key(headers: Any) -> str | None:
    """The API key a request carries (X-API-Key, or Authorization: Bearer)."""
    if headers is None:
        return None
    key = headers.get("x-api-key")
    if not key and (auth := headers.get("authorization", "")).lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


class Sandboxes:
    """Finds the sandbox a request's tool calls act on (see the module docstring)."""

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, sandbox_id: str | None = None,
                 session: str | None = None, template: str = "base", idle_timeout: int = 1800,
                 forward_api_key: bool = False, ca_file: str | None = None):
        self.api_url, self.api_key, self.sandbox_id = api_url, api_key, sandbox_id
        self.ca_file = ca_file  # the server's CA, for calls to a server with TLS (else $SANDLOT_CA_FILE)
        self.template, self.idle_timeout, self.forward_api_key = template, idle_timeout, forward_api_key
        self.session = session or f"mcp-{uuid.uuid4().hex[:12]}"
        # stdio without a session name: a fresh session that ends with the server. Over HTTP the
        # sessions are the callers'; they end when idle.
        self.owns_session = session is None and sandbox_id is None and not forward_api_key
        self._services: dict[tuple[str | None, str | None], AsyncSandboxService] = {}
        self._fixed: AsyncSandbox | None = None

    def connection(self, request: Any) -> dict[str, Any]:
        headers = getattr(request, "headers", None)
        key = request_key(headers) if self.forward_api_key else self.api_key
        url = self.api_url
        if url is None and request is not None:  # mounted in a sandlot server: call it where it was reached
            host, port = request.scope["server"]
            scheme = "https" if request.scope.get("scheme") in ("https", "wss") else "http"  # TLS: tls.py
            url = f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        return {"api_url": url, "api_key": key, "ca_file": self.ca_file}

    def _service(self, conn: dict) -> AsyncSandboxService:
        key = (conn["api_url"], conn["api_key"])
        if key not in self._services:
            self._services[key] = AsyncSandboxService(**conn, namespace=NAMESPACE, template=self.template,
                                                      idle_timeout=self.idle_timeout)
        return self._services[key]

    async def sandbox(self, request: Any) -> AsyncSandbox:
        conn = self.connection(request)
        if self.sandbox_id is not None:
            if self._fixed is None:
                self._fixed = await AsyncSandbox.connect(self.sandbox_id, **conn)
            return self._fixed
        headers = getattr(request, "headers", None)
        session = self.session
        if headers is not None:
            session = headers.get(SESSION_HEADER) or headers.get("mcp-session-id") or "default"
        return await self._service(conn).get_or_create(session, "mcp")

    async def close(self) -> None:
        """Release the server's own session (stdio without --session) and close connections."""
        for service in self._services.values():
            if self.owns_session:
                await service.release(self.session)
            await service.stop()
        if self._fixed is not None:
            await self._fixed.close()


def build_server(sandboxes: Sandboxes, toolset: AsyncToolset | None = None, name: str = "sandlot") -> Server:
    """An MCP `Server` serving `toolset`'s tools (default: all built-ins) on `sandboxes`."""
    toolset = toolset or AsyncToolset()
    listed = [types.Tool(name=t.name, description=t.description, input_schema=t.parameters) for t in toolset]

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            tool = toolset.get(params.name)
            sandbox = await sandboxes.sandbox(ctx.request) if tool.needs_sandbox else None
        except E.SandlotError as e:
            return types.CallToolResult(content=[types.TextContent(type="text", text=e.message)], is_error=True)
        result = await toolset.bind(sandbox).call_tool(params.name, params.arguments or {}) if sandbox \
            else await toolset.call_tool(params.name, params.arguments or {})
        return types.CallToolResult.model_validate(result.to_mcp())

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        conn = sandboxes.connection(ctx.request)
        infos = [info async for info in AsyncSandbox.list(**conn)]
        return types.ListResourcesResult(resources=[
            types.Resource(uri=URI + i.sandbox_id, name=i.sandbox_id, mime_type="application/json",
                           description=f"sandbox {i.sandbox_id} ({i.template_id}, {i.state})") for i in infos])

    async def list_templates(ctx, params) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template=URI + "{sandbox_id}/files/{path}", name="sandbox-file",
            description="A file in a sandbox (path URL-encoded, relative to /home/user or absolute)")])

    async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if not uri.startswith(URI):
            raise MCPError(INVALID_PARAMS, f"unknown resource {uri}")
        sandbox_id, _, rest = uri[len(URI):].partition("/")
        conn = sandboxes.connection(ctx.request)
        try:
            if not rest:
                info = await AsyncSandbox.get_info(sandbox_id, **conn)
                text = json.dumps({"sandbox_id": info.sandbox_id, "template": info.template_id, "state": info.state,
                                   "started_at": str(info.started_at), "end_at": str(info.end_at),
                                   "metadata": info.metadata}, indent=2)
                return types.ReadResourceResult(contents=[types.TextResourceContents(
                    uri=uri, mime_type="application/json", text=text)])
            if not rest.startswith("files/"):
                raise MCPError(INVALID_PARAMS, f"unknown resource {uri}")
            sandbox = await AsyncSandbox.connect(sandbox_id, **conn)
            try:
                data = await sandbox.files.read(unquote(rest[len("files/"):]), format="bytes")
            finally:
                await sandbox.close()
        except E.SandlotError as e:
            raise MCPError(INVALID_PARAMS, f"{uri}: {e.message}") from None
        try:
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="text/plain", text=data.decode("utf-8"))])
        except UnicodeDecodeError:
            return types.ReadResourceResult(contents=[types.BlobResourceContents(
                uri=uri, mime_type="application/octet-stream", blob=base64.b64encode(data).decode())])

    return Server(name, version="1", instructions="Tools that run code and manage files in an isolated Linux "
                  "sandbox (no network). Sandboxes are also listed as resources.",
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_list_resource_templates=list_templates, on_read_resource=read_resource)


async def serve_stdio(sandboxes: Sandboxes, toolset: AsyncToolset | None = None) -> None:
    """Serve on this process's stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(sandboxes, toolset)
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await sandboxes.close()


class McpEndpoint:
    """The MCP server over streamable HTTP as one ASGI endpoint, for a host Starlette app: add
    `route(path)` to its routes and enter `lifespan()` in its lifespan (server/app.py's extensions do both)."""

    def __init__(self, sandboxes: Sandboxes, toolset: AsyncToolset | None = None):
        self.sandboxes = sandboxes
        self.server = build_server(sandboxes, toolset)
        # The API key guards the endpoint; DNS-rebinding checks would also refuse legitimate Host names
        # of a server that listens beyond loopback.
        self.manager = StreamableHTTPSessionManager(
            app=self.server, security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.app = StreamableHTTPASGIApp(self.manager)

    def route(self, path: str = "/mcp") -> Route:
        return Route(path, endpoint=self.app)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            async with self.manager.run():
                yield
        finally:
            await self.sandboxes.close()


def server_endpoint(toolset: AsyncToolset | None = None, **sandbox_options: Any) -> McpEndpoint:
    """The endpoint `sandlot serve` mounts at /mcp (server/app.py guards it with the API key): each
    caller acts with its own API key on the server it reached. With TLS, `ca_file` is the server's
    own CA (`serve` passes it for --tls local-ca), which its calls to itself verify against."""
    # the endpoint's tools call this same server through the SDK: one log line per call is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return McpEndpoint(Sandboxes(forward_api_key=True, **sandbox_options), toolset)


class KeyCheck:
    """ASGI middleware for the standalone HTTP server: a request must carry an API key that the
    sandlot server accepts (checked there, remembered for a minute)."""

    TTL = 60.0

    def __init__(self, app: ASGIApp, api_url: str):
        self.app, self.api_url = app, api_url
        self._valid: dict[str, float] = {}

    async def _accepts(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode()).hexdigest()
        if self._valid.get(digest, 0) > time.monotonic():
            return True
        try:
            await AsyncSandbox.list(limit=1, api_url=self.api_url, api_key=key).next_items()
        except E.AuthenticationError:
            return False
        self._valid[digest] = time.monotonic() + self.TTL
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            key = request_key(headers)
            if not key or not await self._accepts(key):
                message = "missing API key" if not key else "invalid API key"
                await JSONResponse({"code": 401, "message": message}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(api_url: str, path: str = "/mcp", toolset: AsyncToolset | None = None, **sandbox_options: Any) -> Starlette:
    """A standalone Starlette app serving MCP at `path`, in front of the sandlot server at `api_url`."""
    endpoint = McpEndpoint(Sandboxes(api_url, forward_api_key=True, **sandbox_options), toolset)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with endpoint.lifespan():
            yield

    app = Starlette(routes=[endpoint.route(path)], lifespan=lifespan)
    app.add_middleware(KeyCheck, api_url=api_url)
    return app


__all__ = ["KeyCheck", "McpEndpoint", "Sandboxes", "build_server", "http_app", "request_key", "serve_stdio",
           "server_endpoint"]
