"""Toolsets: a selection of tools, bound to a sandbox or not, rendered for each model API and
called through one dispatcher.

`AsyncToolset` holds the I/O (`call_tool`); `Toolset` is its blocking form, running the same
coroutines on the SDK's own event loop (where a blocking `Sandbox` lives). Everything that does no
I/O (selection, rendering) is written once, in `_BaseToolset`.

Unbound (no sandbox), each call of a sandbox tool runs in a temporary sandbox that is killed when
the call ends (AgentScope's behaviour); its template is the tool's own (`run_ipython_cell` needs
`code-interpreter`) or the toolset's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _exceptions as E
from ._context import Settings, ToolContext
from ._result import ToolResult
from ._tool import Tool

log = logging.getLogger("sandlot.tools")


def _registry() -> dict[str, Tool]:
    from .builtin import BUILTIN

    return BUILTIN


def _resolve(tools: Iterable[Tool | str] | None, categories: Iterable[str] | None) -> dict[str, Tool]:
    registry = _registry()
    if tools is None:
        chosen = list(registry.values())
    else:
        chosen = []
        for t in tools:
            if isinstance(t, Tool):
                chosen.append(t)
            elif t in registry:
                chosen.append(registry[t])
            else:
                raise E.InvalidArgument(f"no tool named {t!r} (known: {', '.join(sorted(registry))})")
    if categories is not None:
        wanted = set([categories] if isinstance(categories, str) else categories)
        unknown = wanted - {t.category for t in registry.values()} - {t.category for t in chosen}
        if unknown:
            raise E.InvalidArgument(f"no tool category {', '.join(sorted(unknown))}")
        chosen = [t for t in chosen if t.category in wanted]
    by_name: dict[str, Tool] = {}
    for t in chosen:
        if t.name in by_name and by_name[t.name] is not t:
            raise E.InvalidArgument(f"two different tools are named {t.name!r}")
        by_name[t.name] = t
    return by_name


class _BaseToolset:
    """Selection and rendering, shared by both forms."""

    def __init__(self, sandbox: Any = None, tools: Iterable[Tool | str] | None = None, *,
                 categories: Iterable[str] | str | None = None, template: str = "base",
                 allowed_dirs: Iterable[str] | None = None, max_output_chars: int | None = None,
                 user: str | None = None, api_url: str | None = None, api_key: str | None = None):
        self._tools = _resolve(tools, categories)
        self._sandbox = self._accept(sandbox) if sandbox is not None else None
        self.template = template
        self.settings = Settings(tuple(allowed_dirs) if allowed_dirs is not None else None,
                                 max_output_chars or Settings.max_output_chars, user)
        self._connection = {"api_url": api_url, "api_key": api_key}

    def _accept(self, sandbox: Any) -> Any:
        raise NotImplementedError

    def _options(self) -> dict:
        return {"template": self.template, "allowed_dirs": self.settings.allowed_dirs,
                "max_output_chars": self.settings.max_output_chars, "user": self.settings.user,
                **self._connection}

    @property
    def sandbox(self) -> Any:
        """The bound sandbox, or None (a temporary sandbox per call)."""
        return self._sandbox

    def __repr__(self) -> str:
        where = self._sandbox.sandbox_id if self._sandbox is not None else "unbound"
        return f"<{type(self).__name__} {len(self._tools)} tools, {where}>"

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __getitem__(self, name: str) -> BoundTool:
        if name not in self._tools:
            raise KeyError(name)
        return BoundTool(self, self._tools[name])

    def __getattr__(self, name: str) -> BoundTool:
        """`toolset.run_shell_command(command="ls")`: each tool is also an attribute."""
        tools = self.__dict__.get("_tools", {})
        if name in tools:
            return BoundTool(self, tools[name])
        raise AttributeError(name)

    def list_tools(self) -> list[Tool]:
        return list(self._tools.values())

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def categories(self) -> list[str]:
        return sorted({t.category for t in self._tools.values()})

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise E.NotFound(f"no tool named {name!r} in this toolset") from None

    def select(self, tools: Iterable[Tool | str] | None = None, *,
               categories: Iterable[str] | str | None = None):
        """A new toolset with a subset of these tools (by name and/or category), bound alike."""
        names = list(self._tools.values()) if tools is None else [self.get(t) if isinstance(t, str) else t
                                                                   for t in tools]
        return type(self)(self._sandbox, names, categories=categories, **self._options())

    def bind(self, sandbox: Any):
        """The same tools bound to another sandbox (this toolset is unchanged)."""
        return type(self)(sandbox, list(self._tools.values()), **self._options())

    def with_tools(self, *tools: Tool):
        """These tools plus more (e.g. your own `@tool` functions)."""
        return type(self)(self._sandbox, [*self._tools.values(), *tools], **self._options())

    # --- definitions for each API ---

    def openai_tools(self) -> list[dict]:
        """Chat Completions `tools=`."""
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.parameters}} for t in self]

    def responses_tools(self) -> list[dict]:
        """Responses API `tools=`."""
        return [{"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
                 "strict": False} for t in self]

    def anthropic_tools(self) -> list[dict]:
        """Anthropic Messages `tools=`."""
        return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in self]

    def mcp_tools(self) -> list[dict]:
        """MCP `tools/list` entries."""
        return [{"name": t.name, "description": t.description, "inputSchema": t.parameters} for t in self]

    # --- the dispatcher, without I/O of its own ---

    async def _call(self, name: str, arguments: Mapping | str | None) -> ToolResult:
        """Validate, run, and turn every failure into an error result."""
        try:
            tool = self.get(name)
            args = tool.validate(arguments)
            if not tool.needs_sandbox:
                return ToolResult.of(await tool.invoke(None, args))
            if self._sandbox is not None:
                return ToolResult.of(await tool.invoke(ToolContext(self._impl(), self.settings, False), args))
            from ..client import AsyncSandbox

            sandbox = await AsyncSandbox.create(template=tool.template or self.template, **self._connection)
            async with sandbox:
                return ToolResult.of(await tool.invoke(ToolContext(sandbox, self.settings, True), args))
        except E.SandlotError as e:
            return ToolResult.error(_message(e), error_type=type(e).__name__)
        except Exception as e:  # a bug in a tool still answers the model; the traceback goes to the log
            log.exception("tool %s failed", name)
            return ToolResult.error(f"{type(e).__name__}: {e}", error_type=type(e).__name__)

    def _impl(self) -> Any:
        return self._sandbox

    async def _add_mcp(self, config: Mapping, whitelist: Iterable[str] | None, blacklist: Iterable[str] | None,
                       ) -> list[Tool]:
        from .mcp_inside import McpServers

        if self._sandbox is None:
            raise E.InvalidArgument("MCP servers run in a sandbox: bind the toolset first")
        if self.__dict__.get("_mcp") is None:
            self._mcp = McpServers(self._impl())
        added = await self._mcp.add(config, whitelist, blacklist, self.settings.user)
        for t in added:
            if t.name in self._tools:
                raise E.AlreadyExists(f"the toolset already has a tool named {t.name}")
            self._tools[t.name] = t
        return added

    async def _close(self) -> None:
        if self.__dict__.get("_mcp") is not None:
            await self._mcp.close()
            self._tools = {n: t for n, t in self._tools.items() if not t.category.startswith("mcp:")}
            self._mcp = None

    async def _answer_openai(self, message: Any) -> list[dict]:
        out: list[dict] = []
        for call in _get(message, "tool_calls") or ():
            function = _get(call, "function")
            result = await self._call(_get(function, "name"), _get(function, "arguments"))
            out += result.to_openai(_get(call, "id"))
        return out

    async def _answer_responses(self, output: Iterable[Any]) -> list[dict]:
        out = []
        for item in output:
            if _get(item, "type") == "function_call":
                result = await self._call(_get(item, "name"), _get(item, "arguments"))
                out.append(result.to_openai_responses(_get(item, "call_id")))
        return out

    async def _answer_anthropic(self, content: Iterable[Any]) -> list[dict]:
        out = []
        for block in content:
            if _get(block, "type") == "tool_use":
                result = await self._call(_get(block, "name"), _get(block, "input"))
                out.append(result.to_anthropic(_get(block, "id")))
        return out


def _get(obj: Any, key: str) -> Any:
    """A field of an SDK object or of the same thing as a dict."""
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _message(e: E.SandlotError) -> str:
    text = e.message or str(e) or type(e).__name__
    if isinstance(e, E.CommandExitError):
        return text
    return text if type(e) in (E.SandlotError, E.InvalidArgument) else f"{type(e).__name__}: {text}"


class AsyncToolset(_BaseToolset):
    """Tools for a model, acting on an `AsyncSandbox` (or, unbound, on a temporary one per call).

        toolset = AsyncToolset(sandbox)                        # every built-in tool
        tools = toolset.openai_tools()                         # or responses_/anthropic_/mcp_tools()
        result = await toolset.call_tool("run_shell_command", {"command": "ls"})
        print(result.text, result.is_error)

    `call_tool` never raises for a failed call: the error comes back as an error result the model
    can read.
    """

    def _accept(self, sandbox: Any) -> Any:
        from ..client import AsyncSandbox

        if not isinstance(sandbox, AsyncSandbox):
            raise TypeError("AsyncToolset works on an AsyncSandbox; use Toolset (or tools.bind) for a Sandbox")
        return sandbox

    async def call_tool(self, name: str, arguments: Mapping | str | None = None) -> ToolResult:
        """Run a tool with arguments from a model (a dict, or a JSON string as OpenAI sends them)."""
        return await self._call(name, arguments)

    execute_tool = call_tool  # Alphora's name

    async def answer_openai(self, message: Any) -> list[dict]:
        """Run every tool call of a Chat Completions assistant message; returns the messages to append."""
        return await self._answer_openai(message)

    async def answer_responses(self, output: Iterable[Any]) -> list[dict]:
        """Run every `function_call` of a Responses API output; returns the input items to send back."""
        return await self._answer_responses(output)

    async def answer_anthropic(self, content: Iterable[Any]) -> list[dict]:
        """Run every `tool_use` block of an Anthropic response's content; returns the `tool_result`
        blocks for the next user message."""
        return await self._answer_anthropic(content)

    async def add_mcp_servers(self, server_configs: Mapping, whitelist: Iterable[str] | None = None,
                              blacklist: Iterable[str] | None = None) -> list[Tool]:
        """Start stdio MCP servers inside the bound sandbox and add their tools to this toolset
        (AgentScope's `add_mcp_servers`; configuration shapes in mcp_inside.py). `close()` stops them."""
        return await self._add_mcp(server_configs, whitelist, blacklist)

    async def close(self) -> None:
        """Stop the MCP servers this toolset started (the sandbox is left alone)."""
        await self._close()


class Toolset(_BaseToolset):
    """The blocking form of `AsyncToolset`, for a blocking `Sandbox`:

        from sandlot import Sandbox
        from sandlot.tools import Toolset

        with Sandbox.create() as sandbox:
            toolset = Toolset(sandbox, categories=["code", "files"])
            result = toolset.call_tool("run_python_code", {"code": "print(6 * 7)"})
            assert result.text.strip() == "42"
    """

    def _accept(self, sandbox: Any) -> Any:
        from ..client import AsyncSandbox, Sandbox

        if isinstance(sandbox, AsyncSandbox):
            raise TypeError("Toolset works on a blocking Sandbox; use AsyncToolset for an AsyncSandbox")
        if not isinstance(sandbox, Sandbox):
            raise TypeError(f"expected a sandlot Sandbox, got {type(sandbox).__name__}")
        return sandbox

    def _impl(self) -> Any:
        return self._sandbox._impl  # the AsyncSandbox behind it, on the SDK's loop, where we run

    @staticmethod
    def _run(coro) -> Any:
        from ..client import _loop

        return _loop.run(coro)

    def call_tool(self, name: str, arguments: Mapping | str | None = None) -> ToolResult:
        """Run a tool with arguments from a model (a dict, or a JSON string as OpenAI sends them)."""
        return self._run(self._call(name, arguments))

    execute_tool = call_tool  # Alphora's name

    def answer_openai(self, message: Any) -> list[dict]:
        """Run every tool call of a Chat Completions assistant message; returns the messages to append."""
        return self._run(self._answer_openai(message))

    def answer_responses(self, output: Iterable[Any]) -> list[dict]:
        """Run every `function_call` of a Responses API output; returns the input items to send back."""
        return self._run(self._answer_responses(output))

    def answer_anthropic(self, content: Iterable[Any]) -> list[dict]:
        """Run every `tool_use` block of an Anthropic response's content; returns the `tool_result`
        blocks for the next user message."""
        return self._run(self._answer_anthropic(content))

    def add_mcp_servers(self, server_configs: Mapping, whitelist: Iterable[str] | None = None,
                        blacklist: Iterable[str] | None = None) -> list[Tool]:
        """Start stdio MCP servers inside the bound sandbox and add their tools to this toolset
        (AgentScope's `add_mcp_servers`; configuration shapes in mcp_inside.py). `close()` stops them."""
        return self._run(self._add_mcp(server_configs, whitelist, blacklist))

    def close(self) -> None:
        """Stop the MCP servers this toolset started (the sandbox is left alone)."""
        self._run(self._close())


class BoundTool:
    """One tool of a toolset, callable like a function: `toolset.read_file(path="a.txt")` or
    `toolset["read_file"]("a.txt")` (positional arguments in the signature's order). Blocking for a
    `Toolset`, a coroutine for an `AsyncToolset`."""

    def __init__(self, toolset: _BaseToolset, tool: Tool):
        self.toolset, self.tool = toolset, tool

    def __repr__(self) -> str:
        return f"<BoundTool {self.tool.name} of {self.toolset!r}>"

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def schema(self) -> dict:
        return self.tool.schema

    def _arguments(self, args: tuple, kwargs: dict) -> dict:
        if len(args) > len(self.tool.positional):
            raise TypeError(f"{self.tool.name} takes at most {len(self.tool.positional)} positional arguments")
        named = dict(zip(self.tool.positional, args))
        clash = named.keys() & kwargs.keys()
        if clash:
            raise TypeError(f"{self.tool.name} got {', '.join(sorted(clash))} twice")
        return {**named, **kwargs}

    def __call__(self, *args: Any, **kwargs: Any):
        return self.toolset.call_tool(self.tool.name, self._arguments(args, kwargs))


def bind(sandbox: Any, tools: Iterable[Tool | str] | None = None, **options: Any) -> _BaseToolset:
    """A toolset on `sandbox`, in its style: a `Toolset` for a blocking `Sandbox`, an `AsyncToolset`
    for an `AsyncSandbox`."""
    from ..client import AsyncSandbox

    cls = AsyncToolset if isinstance(sandbox, AsyncSandbox) else Toolset
    return cls(sandbox, tools, **options)


Tool._toolset = bind  # Tool.bind() and calling a Tool make toolsets of it (see _tool.py)
