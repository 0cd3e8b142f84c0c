"""Helpers shared by the built-in tools: running a command for a model, reading a file for one."""

from __future__ import annotations

import re

from ... import _exceptions as E
from .._context import ToolContext
from .._result import ImageContent, TextContent, ToolResult

MAX_READ_BYTES = 10 << 20  # read_file refuses bigger files (head/tail/grep through a command instead)
MAX_IMAGE_BYTES = 5 << 20  # the most the model APIs take for one image
MAX_LINE_CHARS = 2000  # read_file cuts longer lines (minified code, data dumps)
MAX_KEPT_BYTES = 4 << 20  # of a command's stdout, and of its stderr: far past what a model is shown at once
DEFAULT_TIMEOUT = 60.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IMAGES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
           (b"GIF89a", "image/gif"))


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def human(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def image_type(data: bytes) -> str | None:
    for magic, mime in _IMAGES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class _Kept:
    """The first MAX_KEPT_BYTES of one output stream; the rest is counted, not held."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = self.dropped = 0

    def __call__(self, data: bytes) -> None:
        room = MAX_KEPT_BYTES - self.size
        if room > 0:
            self.parts.append(data[:room])
            self.size += min(room, len(data))
        self.dropped += max(0, len(data) - room)

    def text(self) -> str:
        text = b"".join(self.parts).decode("utf-8", "replace")
        return text + (f"\n[... {human(self.dropped)} more output not kept]" if self.dropped else "")


async def run_command(ctx: ToolContext, cmd: str, timeout: float, cwd: str | None = None) -> ToolResult:
    """Run a shell command for a model: its output as text (stderr marked, a non-zero exit code and a
    timeout said in words), cut to the output budget; an error result if it did not succeed. Of
    each stream only the first MAX_KEPT_BYTES are kept: the handle would keep it all (`raw` keeps
    nothing), and `sandlot serve` runs these tools for /mcp callers in its own process."""
    if not timeout > 0:
        raise E.InvalidArgument("timeout must be above 0 seconds")
    stdout, stderr = _Kept(), _Kept()
    handle = await ctx.sandbox.commands.run(cmd, background=True, timeout=timeout, cwd=cwd, user=ctx.user,
                                            check=False, raw=True, on_stdout=stdout, on_stderr=stderr)
    timed_out = False
    try:
        result = await handle.wait()
        exit_code, duration = result.exit_code, result.duration
    except E.TimeoutError:
        timed_out, exit_code, duration = True, None, timeout
    return await command_result(ctx, stdout.text(), stderr.text(), exit_code, duration,
                                f"[timed out after {timeout:g} s: the command was killed]" if timed_out else None)


async def command_result(ctx: ToolContext, stdout: str, stderr: str, exit_code: int | None, duration: float,
                         timed_out: str | None = None) -> ToolResult:
    """A command's outcome for a model: its output as text (stderr marked, a non-zero exit code or
    the `timed_out` note said in words), cut to the output budget; an error result unless it exited 0."""
    parts = [stdout.rstrip("\n")]
    if stderr:
        parts.append("[stderr]\n" + stderr.rstrip("\n"))
    if timed_out:
        parts.append(timed_out)
    elif exit_code:
        parts.append(f"[exit code {exit_code}]")
    text = "\n".join(p for p in parts if p) or "(no output)"
    text, cut = await ctx.limit(text)
    data = {"success": exit_code == 0, "exit_code": exit_code, "timed_out": bool(timed_out),
            "duration": round(duration, 3)}
    if cut:
        data["truncated"] = cut
    return ToolResult([TextContent(text)], is_error=exit_code != 0, data=data)


async def read_bytes(ctx: ToolContext, path: str) -> bytes:
    """A whole file, refused (with what to do instead) past MAX_READ_BYTES."""
    stream = await ctx.sandbox.files.read(path, format="stream", user=ctx.user)
    chunks, size = [], 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_READ_BYTES:
                raise E.InvalidArgument(f"{path} is larger than {human(MAX_READ_BYTES)}: too large to read whole; "
                                        "look at parts of it with run_shell_command (head, tail, grep, sed -n)")
            chunks.append(chunk)
    finally:
        await stream.aclose()
    return b"".join(chunks)


def decode_text(path: str, data: bytes) -> str:
    """The file as text; a binary file is refused with a message that says what it looks like."""
    if b"\0" not in data[:8192]:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise E.InvalidArgument(f"{path} is a binary file ({human(len(data))}), not shown; inspect it with "
                            "run_shell_command (e.g. `file`, `xxd | head`)")


async def read_for_model(ctx: ToolContext, path: str, offset: int = 1, limit: int | None = None) -> ToolResult:
    """A text file's lines `offset`.. (1-based), long lines cut, within the output budget; an image as
    an image; other binary files refused."""
    if offset < 1:
        raise E.InvalidArgument("offset is a line number, 1 or more")
    if limit is not None and limit < 1:
        raise E.InvalidArgument("limit must be at least 1 line")
    data = await read_bytes(ctx, path)
    mime = image_type(data)
    if mime:
        if len(data) > MAX_IMAGE_BYTES:
            raise E.InvalidArgument(f"{path} is an image of {human(len(data))}, more than a model takes "
                                    f"({human(MAX_IMAGE_BYTES)})")
        import base64

        return ToolResult([ImageContent(base64.b64encode(data).decode(), mime)],
                          data={"path": path, "mime_type": mime, "size": len(data)})
    lines = decode_text(path, data).splitlines(keepends=True)
    total = len(lines)
    if offset > max(total, 1):
        raise E.InvalidArgument(f"{path} has {total} lines; offset {offset} is past its end")
    chosen = lines[offset - 1:offset - 1 + limit if limit else None]
    budget = ctx.settings.max_output_chars
    out, used = [], 0
    for line in chosen:
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f"... [line cut at {MAX_LINE_CHARS} characters]\n"
        if used + len(line) > budget and out:
            break
        out.append(line)
        used += len(line)
    last = offset + len(out) - 1
    text = "".join(out)
    if last < total:
        text += (("" if text.endswith("\n") else "\n") +
                 f"[... lines {offset}-{last} of {total} shown; continue with read_file(path=\"{path}\", "
                 f"offset={last + 1})]")
    return ToolResult([TextContent(text)], data={"path": path, "first_line": offset, "last_line": last,
                                                 "total_lines": total})
