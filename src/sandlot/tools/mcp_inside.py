"""MCP servers that run *inside* a sandbox, and their tools on the host.

A stdio MCP server is started in the sandbox as a background command; the host speaks MCP to it
through that process's stdin and stdout (the agent's process stream), with the official `mcp`
client on top. Sandboxes have no network, so this needs nothing but the sandbox itself.

The configuration shapes accepted (Claude Desktop's `mcpServers`, E2B's custom servers) are
gateway/config.py's. E2B's other way, one HTTP endpoint for all servers (`mcp=` on create,
`get_mcp_url()`), is the in-sandbox gateway (gateway/, the `mcp-gateway` template).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import anyio
import mcp.types as types
from mcp import Client
from mcp.shared.message import SessionMessage

from .. import _exceptions as E
from ..gateway import config as gateway_config
from ..gateway.config import ServerConfig
from ._context import ToolContext
from ._result import ImageContent, TextContent, ToolResult
from ._tool import Tool

STOP_GRACE = 2.0  # seconds a server gets to exit after its stdin closes, before SIGKILL
INSTALL_TIMEOUT = 600
START_TIMEOUT = 120.0  # seconds for a server to answer `initialize`
MAX_MESSAGE_BYTES = 16 << 20  # a line of a server's stdout (a JSON-RPC message), as the agent's frames


def parse_config(config: Mapping) -> list[ServerConfig]:
    """Both shapes (gateway/config.py) into ServerConfigs; InvalidArgument or Unsupported saying what
    is wrong with an entry."""
    try:
        return gateway_config.parse_config(config)
    except gateway_config.ConfigError as e:
        raise (E.Unsupported if e.unsupported else E.InvalidArgument)(str(e)) from None


@contextlib.asynccontextmanager
async def sandbox_stdio(sandbox: Any, server: ServerConfig, user: str | None = None) -> AsyncIterator[tuple]:
    """An MCP client transport to a stdio server started in `sandbox` (an AsyncSandbox): yields the
    (read, write) streams of SessionMessages the `mcp` Client expects."""
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](64)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](64)
    buffer = bytearray()  # the line begun
    skipping = False  # a line past MAX_MESSAGE_BYTES: dropped up to its end

    async def deliver(item: bytes | Exception) -> None:
        message: SessionMessage | Exception = item if isinstance(item, Exception) else _message(item)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await read_writer.send(message)

    async def on_stdout(chunk: bytes) -> None:
        # The server is the sandbox's: its output is split where its lines end, each byte looked at
        # once, and no more of a line is held than MAX_MESSAGE_BYTES, whatever it writes.
        nonlocal buffer, skipping
        *ended, rest = chunk.split(b"\n")
        for part in ended:
            if not skipping and (line := bytes(buffer + part)).strip():
                await deliver(line)
            buffer, skipping = bytearray(), False
        if not skipping:
            buffer += rest
            if len(buffer) > MAX_MESSAGE_BYTES:
                buffer, skipping = bytearray(), True
                await deliver(ValueError(f"the server wrote a line longer than {MAX_MESSAGE_BYTES >> 20} MiB"))

    # raw: the output comes as bytes and the handle keeps none of it (a server may run for hours)
    handle = await sandbox.commands.run(server.command, background=True, stdin=True, envs=server.env,
                                        cwd=server.cwd, user=user, timeout=0, on_stdout=on_stdout, raw=True)

    async def pump_in() -> None:
        async with write_reader:
            async for message in write_reader:
                line = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await handle.send_stdin(line)

    async def ended() -> None:  # the server exited: the client sees the end of its stream
        with contextlib.suppress(E.SandlotError):
            await handle.wait()
        await read_writer.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_in)
            tg.start_soon(ended)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(E.SandlotError):
                await handle.close_stdin()
                with anyio.move_on_after(STOP_GRACE):
                    await handle.wait()
                if handle.exit_code is None:
                    await handle.kill()
            await handle.disconnect()


def _message(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line))
    except ValueError as e:  # a server that prints something else on stdout
        return e


def _result(result: types.CallToolResult) -> ToolResult:
    content: list = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            content.append(TextContent(block.text))
        elif isinstance(block, types.ImageContent):
            content.append(ImageContent(block.data, block.mime_type))
        else:
            content.append(TextContent(json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))))
    return ToolResult(content, bool(result.is_error), result.structured_content)


def _filter(tools: list[types.Tool], whitelist: Iterable[str] | None, blacklist: Iterable[str] | None):
    allowed = set(whitelist) if whitelist is not None else None
    denied = set(blacklist or ())
    return [t for t in tools if (allowed is None or t.name in allowed) and t.name not in denied]


class _Connection:
    """One client session, held open by a task of its own: anyio's task groups (in the client and in
    the transport) must be left by the task that entered them, and callers (a blocking toolset's
    calls, each a task of its own) come and go."""

    def __init__(self, client: Client):
        self.client = client
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def open(self, name: str, timeout: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._hold())
        ready = asyncio.get_running_loop().create_task(self._ready.wait())
        done, _ = await asyncio.wait({self._task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._ready.is_set():
            return
        if self._task in done:
            error = self._task.exception()
            if isinstance(error, E.SandlotError):
                raise error
            raise E.SandlotError(f"MCP server {name} did not start ({type(error).__name__}: {error}); check its "
                                 "command in the sandbox")
        await self.close()
        raise E.TimeoutError(f"MCP server {name} did not answer within {timeout:g} s")

    async def _hold(self) -> None:
        async with self.client:
            self._ready.set()
            await self._stop.wait()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task


class McpServers:
    """Stdio MCP servers running in one sandbox, each with an open client session.

        servers = await McpServers.start(sandbox, {"mcpServers": {"calc": {"command": "python3",
                                                                           "args": ["calc.py"]}}})
        toolset = AsyncToolset(sandbox).with_tools(*servers.tools())
        result = await toolset.call_tool("add", {"a": 1, "b": 2})
        await servers.close()
    """

    def __init__(self, sandbox: Any):
        self.sandbox = sandbox
        self._clients: dict[str, _Connection] = {}
        self._tools: dict[str, tuple[str, types.Tool]] = {}  # tool name -> (server name, definition)

    @classmethod
    async def start(cls, sandbox: Any, config: Mapping, whitelist: Iterable[str] | None = None,
                    blacklist: Iterable[str] | None = None, user: str | None = None) -> McpServers:
        """Install (if asked) and start every configured server in `sandbox` (an AsyncSandbox), and
        learn their tools, keeping those the whitelist allows and the blacklist does not name."""
        servers = cls(sandbox)
        try:
            await servers.add(config, whitelist, blacklist, user)
        except BaseException:
            await servers.close()
            raise
        return servers

    async def add(self, config: Mapping, whitelist: Iterable[str] | None = None,
                  blacklist: Iterable[str] | None = None, user: str | None = None) -> list[Tool]:
        """Start more servers; returns their tools."""
        added = []
        for server in parse_config(config):
            if server.name in self._clients:
                raise E.AlreadyExists(f"an MCP server named {server.name} already runs here")
            if server.install:
                await self.sandbox.commands.run(server.install, envs=server.env, cwd=server.cwd, user=user,
                                                timeout=INSTALL_TIMEOUT)
            connection = _Connection(Client(sandbox_stdio(self.sandbox, server, user), mode="legacy",
                                            read_timeout_seconds=300))
            await connection.open(server.name, START_TIMEOUT)
            self._clients[server.name] = connection
            for t in _filter((await connection.client.list_tools()).tools, whitelist, blacklist):
                if t.name in self._tools:
                    raise E.AlreadyExists(f"two MCP servers offer a tool named {t.name}")
                self._tools[t.name] = (server.name, t)
                added.append(self._tool(t.name))
        return added

    def _tool(self, name: str) -> Tool:
        server, definition = self._tools[name]

        async def call(**arguments: Any) -> ToolResult:
            return await self.call(name, arguments)

        props = list((definition.input_schema or {}).get("properties") or {})
        return Tool(name, definition.description or f"{name} (from MCP server {server})", None, call,
                    category=f"mcp:{server}", needs_sandbox=False, positional=tuple(props),
                    input_schema=dict(definition.input_schema or {}))

    def tools(self) -> list[Tool]:
        return [self._tool(name) for name in self._tools]

    async def call(self, name: str, arguments: Mapping | None = None) -> ToolResult:
        if name not in self._tools:
            raise E.NotFound(f"no MCP tool named {name!r} in this sandbox")
        server, _ = self._tools[name]
        return _result(await self._clients[server].client.call_tool(name, dict(arguments or {})))

    def url(self) -> str:
        """E2B's `get_mcp_url()`: one streamable-HTTP gateway for all servers, through the port proxy."""
        raise E.Unsupported("these servers are reached over the agent's stdio, not the port proxy: for one HTTP "
                            "endpoint create the sandbox with mcp= (the mcp-gateway template, docs/tools.md)")

    async def close(self) -> None:
        """Stop the servers (stdin closed, then killed after a grace period)."""
        for connection in self._clients.values():
            await connection.close()
        self._clients.clear()
        self._tools.clear()


class MCPConfigConverter:
    """AgentScope's converter: MCP server configurations into tools that run in a sandbox.

        tools = MCPConfigConverter(config).to_builtin_tools(sandbox=sandbox)      # servers start now
        tools = MCPConfigConverter(config).to_builtin_tools(template="base")      # per call, temporary

    With a blocking `Sandbox` the servers start now and the tools call them there; without a sandbox
    each call starts the servers in a temporary sandbox (listing the tools takes one too).
    """

    def __init__(self, server_configs: Mapping, whitelist: Iterable[str] | None = None,
                 blacklist: Iterable[str] | None = None):
        parse_config(server_configs)  # refuse a bad configuration now
        self.config, self.whitelist, self.blacklist = server_configs, whitelist, blacklist

    def to_builtin_tools(self, sandbox: Any = None, template: str = "base", whitelist: Iterable[str] | None = None,
                         blacklist: Iterable[str] | None = None, **connection: Any) -> list[Tool]:
        from ..client import _loop

        allow = whitelist if whitelist is not None else self.whitelist
        deny = blacklist if blacklist is not None else self.blacklist
        if sandbox is not None:
            servers = _loop.run(McpServers.start(sandbox._impl, self.config, allow, deny))
            return servers.tools()
        return _loop.run(self._temporary_tools(template, allow, deny, connection))

    async def _temporary_tools(self, template: str, allow, deny, connection: dict) -> list[Tool]:
        from ..client import AsyncSandbox

        async with await AsyncSandbox.create(template=template, **connection) as probe:
            servers = await McpServers.start(probe, self.config, allow, deny)
            definitions = [servers._tools[name][1] for name in servers._tools]
            await servers.close()
        config = self.config

        def per_call(definition: types.Tool) -> Tool:
            async def call(ctx: ToolContext, **arguments: Any) -> ToolResult:
                servers = await McpServers.start(ctx.sandbox, config, [definition.name])
                try:
                    return await servers.call(definition.name, arguments)
                finally:
                    await servers.close()

            props = tuple((definition.input_schema or {}).get("properties") or {})
            return Tool(definition.name, definition.description or definition.name, None, call, category="mcp",
                        template=template, positional=props, input_schema=dict(definition.input_schema or {}))

        return [per_call(d) for d in definitions]
