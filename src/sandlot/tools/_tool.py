"""`Tool`: one definition per tool (name, description for a model, arguments, implementation), and
the `@tool` decorator that makes one from a typed function.

The arguments' JSON Schema is generated from the function's signature through a pydantic model,
which also validates the arguments a model sends, so the two never drift apart:

    @tool(category="code")
    async def run_shell_command(ctx: ToolContext,
                                command: Annotated[str, "The command line, run by bash"],
                                timeout: Annotated[float, "Seconds before it is killed"] = 60) -> ToolResult:
        \"\"\"Run a shell command in the sandbox and return its output and exit code.\"\"\"

A first parameter annotated `ToolContext` receives the sandbox; a function without one is a
*function tool* that runs in this process (AgentScope's FunctionTool), sync or async.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, ClassVar, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .. import _exceptions as E

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")  # what OpenAI and Anthropic accept as a tool name


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _describe(annotation: Any) -> Any:
    """`Annotated[T, "text"]` is shorthand for `Annotated[T, Field(description="text")]`."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        meta = [Field(description=m) if isinstance(m, str) else m for m in meta]
        return Annotated[(base, *meta)]
    return annotation


def _inline(schema: Any, defs: dict) -> Any:
    """Replace `$ref`s to `$defs` by the definitions: not every model API resolves references."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return {**_inline(defs[ref.split("/")[-1]], defs), **_inline(rest, defs)}
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _clean(schema: Any) -> Any:
    """Drop pydantic's `title`s: noise for a model, and it makes every schema longer."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


@dataclass(frozen=True, eq=False)
class Tool:
    """A tool: `name`, a `description` written for a model, `params` (the pydantic model of its
    arguments) and `fn`, the implementation. `parameters` is the arguments' JSON Schema (draft
    2020-12); `schema` the whole definition in the common function-calling shape."""

    name: str
    description: str
    params: type[BaseModel] | None  # None: `input_schema` describes the arguments (tools from MCP servers)
    fn: Callable[..., Any]
    category: str = "custom"
    template: str | None = None  # for a temporary sandbox: the template this tool needs
    needs_sandbox: bool = True
    positional: tuple[str, ...] = field(default=())
    input_schema: dict | None = None

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise E.InvalidArgument(f"tool names are 1-64 letters, digits, '_' or '-': {self.name!r}")

    def __repr__(self) -> str:
        return f"<Tool {self.name} ({self.category})>"

    @cached_property
    def parameters(self) -> dict:
        if self.params is None:
            return {"type": "object", "properties": {}, **(self.input_schema or {})}
        raw = self.params.model_json_schema()
        try:
            schema = _clean(_inline(raw, raw.get("$defs", {})))
            schema.pop("$defs", None)
        except RecursionError:  # a recursive model: its references stay
            schema = _clean(raw)
        schema.setdefault("properties", {})
        return schema

    @property
    def schema(self) -> dict:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def validate(self, arguments: Mapping | str | None) -> dict:
        """The arguments checked and completed with defaults; InvalidArgument says what is wrong in
        words a model can act on. A JSON string (as OpenAI sends them) is parsed first."""
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, (str, bytes)):
            try:
                arguments = json.loads(arguments)
            except ValueError as e:
                raise E.InvalidArgument(f"the arguments of {self.name} are not valid JSON: {e}") from None
        if not isinstance(arguments, Mapping):
            raise E.InvalidArgument(f"the arguments of {self.name} must be a JSON object")
        if self.params is None:
            from jsonschema import Draft202012Validator

            problems = [f"{'.'.join(map(str, err.absolute_path)) or 'arguments'}: {err.message}"
                        for err in Draft202012Validator(self.parameters).iter_errors(dict(arguments))]
            if problems:
                raise E.InvalidArgument(f"invalid arguments for {self.name}: {'; '.join(problems)}")
            return dict(arguments)
        try:
            model = self.params.model_validate(dict(arguments))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in e.errors())
            raise E.InvalidArgument(f"invalid arguments for {self.name}: {problems}") from None
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def invoke(self, ctx: Any, arguments: dict) -> Any:
        """Run the implementation with validated arguments (`ctx` only for sandbox tools)."""
        if not self.needs_sandbox:
            if inspect.iscoroutinefunction(self.fn):
                return await self.fn(**arguments)
            return await asyncio.to_thread(self.fn, **arguments)
        return await self.fn(ctx, **arguments)

    # --- AgentScope's tool surface: call unbound (a temporary sandbox), or bind to a sandbox ---
    # Both are a toolset of this one tool. Toolsets are made of tools (_toolset.py imports this
    # module), so rather than import it back, Tool gets the toolsets' `bind` from _toolset.py, which
    # sets it when it loads (`import sandlot.tools` loads it before any tool can be used).

    _toolset: ClassVar[Callable[..., Any]]  # _toolset.bind(sandbox or None, tools, **options)

    def bind(self, sandbox: Any, **options: Any):
        """This tool bound to `sandbox` (blocking `Sandbox` -> blocking calls, `AsyncSandbox` -> async)."""
        return Tool._toolset(sandbox, [self], **options)[self.name]

    def __call__(self, *args: Any, **kwargs: Any):
        """Call with a temporary sandbox (function tools: in this process), blocking."""
        return Tool._toolset(None, [self])[self.name](*args, **kwargs)  # no sandbox: a blocking Toolset


def _context_param(fn: Callable) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return False
    from ._context import ToolContext

    hints = get_type_hints(fn, include_extras=True)
    return hints.get(params[0].name) is ToolContext


def tool(fn: Callable | None = None, *, name: str | None = None, description: str | None = None,
         category: str = "custom", template: str | None = None) -> Any:
    """Make a `Tool` from a typed function (usable bare, `@tool`, or with options, `@tool(...)`).
    The description defaults to the docstring; argument descriptions come from `Annotated[T, "..."]`
    or `Annotated[T, Field(description=...)]`."""

    def make(fn: Callable) -> Tool:
        has_ctx = _context_param(fn)
        hints = get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        names = []
        for i, p in enumerate(inspect.signature(fn).parameters.values()):
            if i == 0 and has_ctx:
                continue
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                raise E.InvalidArgument(f"tool {fn.__name__}: *args/**kwargs cannot be described to a model")
            if p.name not in hints:
                raise E.InvalidArgument(f"tool {fn.__name__}: parameter {p.name} needs a type annotation")
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (_describe(hints[p.name]), default)
            names.append(p.name)
        params = create_model(f"{fn.__name__}_arguments", __base__=_Params, **fields)
        doc = description or inspect.getdoc(fn) or ""
        if not doc:
            raise E.InvalidArgument(f"tool {fn.__name__} needs a description (a docstring) for the model")
        return Tool(name or fn.__name__, doc, params, fn, category, template, has_ctx, tuple(names))

    return make(fn) if fn is not None else make
