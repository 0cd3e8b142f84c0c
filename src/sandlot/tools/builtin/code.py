"""Tools that run code: Python (a fresh process, a file, or a stateful IPython cell) and shell commands."""

from __future__ import annotations

import posixpath
import shlex
import uuid
from typing import Annotated

from ... import _exceptions as E
from .._context import ToolContext
from .._result import ImageContent, TextContent, ToolResult
from .._tool import tool
from ._common import DEFAULT_TIMEOUT, run_command, strip_ansi

MAX_INLINE_CODE = 100_000  # bytes passed as `python3 -c` (one argv string may be 128 KiB); more goes via a file

Timeout = Annotated[float, "Seconds before the run is stopped (default 60)"]


@tool(category="code")
async def run_python_code(ctx: ToolContext, code: Annotated[str, "Python source code to run"],
                          timeout: Timeout = DEFAULT_TIMEOUT) -> ToolResult:
    """Run Python code in a fresh python3 process in the sandbox and return what it printed (stdout,
    then stderr) and its exit code. Nothing is kept between calls: use run_ipython_cell for state
    that persists, or write files."""
    if len(code.encode()) <= MAX_INLINE_CODE:
        return await run_command(ctx, f"python3 -c {shlex.quote(code)}", timeout)
    script = f"/tmp/sandlot-tool-run/{uuid.uuid4().hex[:12]}.py"
    await ctx.sandbox.files.write(script, code, user=ctx.user)
    return await run_command(ctx, f"python3 {script}; status=$?; rm -f {script}; exit $status", timeout)


@tool(category="code")
async def run_python_file(ctx: ToolContext, path: Annotated[str, "Path of the .py file in the sandbox"],
                          args: Annotated[list[str], "Command-line arguments for the script"] = [],  # noqa: B006
                          timeout: Timeout = DEFAULT_TIMEOUT) -> ToolResult:
    """Run a Python file in the sandbox with optional arguments (from the file's directory) and return
    its output and exit code."""
    path = await ctx.path(path)
    argv = " ".join(shlex.quote(a) for a in [path, *args])
    return await run_command(ctx, f"python3 {argv}", timeout, cwd=posixpath.dirname(path))


@tool(category="code")
async def run_shell_command(ctx: ToolContext, command: Annotated[str, "The command line, run by bash"],
                            timeout: Timeout = DEFAULT_TIMEOUT,
                            cwd: Annotated[str | None, "Working directory (default: the user's home)"] = None,
                            ) -> ToolResult:
    """Run a shell command in the sandbox (bash, as an ordinary user with sudo) and return its
    output and exit code. The sandbox is a Debian Linux machine without network access."""
    return await run_command(ctx, command, timeout, cwd=await ctx.path(cwd, "cwd") if cwd else None)


@tool(category="code", template="code-interpreter")
async def run_ipython_cell(ctx: ToolContext, code: Annotated[str, "Python code for one IPython cell"],
                           timeout: Timeout = DEFAULT_TIMEOUT) -> ToolResult:
    """Run code in a stateful IPython kernel: variables, imports and definitions persist between
    calls. Returns what it printed, the value of the last expression, plots as images, and the
    error with its traceback if it raised."""
    try:
        execution = await ctx.sandbox.run_code(code, timeout=timeout)
    except E.NotFound as e:
        raise E.InvalidArgument(f"this sandbox has no IPython kernel (create it from the code-interpreter "
                                f"template), or use run_python_code instead ({e.message})") from None
    except E.TimeoutError as e:
        execution = e.details.get("execution")
        if execution is None:
            raise
        return await _cell(ctx, execution, f"[timed out after {timeout:g} s: the cell was interrupted; "
                                           "the kernel keeps its state]")
    return await _cell(ctx, execution)


async def _cell(ctx: ToolContext, execution, note: str | None = None) -> ToolResult:
    text = "".join(execution.logs.stdout)
    if execution.logs.stderr:
        text += "[stderr]\n" + "".join(execution.logs.stderr)
    images = []
    for result in execution.results:
        if result.png or result.jpeg:
            images.append(ImageContent(result.png or result.jpeg, "image/png" if result.png else "image/jpeg"))
        if result.is_main_result and result.text is not None:
            text += f"Out[{execution.execution_count or ''}]: {result.text}\n"
    if execution.error:
        text += strip_ansi(execution.error.traceback) or f"{execution.error.name}: {execution.error.value}"
    if note:
        text += ("\n" if text else "") + note
    text, cut = await ctx.limit(text.strip("\n") or "(no output)")
    data = {"success": execution.error is None and note is None, "execution_count": execution.execution_count,
            "error": {"name": execution.error.name, "value": execution.error.value} if execution.error else None}
    if cut:
        data["truncated"] = cut
    return ToolResult([TextContent(text), *images], is_error=not data["success"], data=data)
