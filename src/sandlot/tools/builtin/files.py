"""File tools: Alphora's (save/read/delete/list/copy/move, file_exists) and AgentScope's filesystem
set (read_multiple_files, write_file, edit_file, create_directory, list_directory, directory_tree,
search_files, get_file_info, list_allowed_directories). read_file and move_file serve both."""

from __future__ import annotations

import fnmatch
import json
import posixpath
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ... import _exceptions as E
from .._context import ToolContext
from .._result import TextContent, ToolResult
from .._tool import tool
from ._common import human, read_for_model

Path = Annotated[str, "Path in the sandbox (relative paths start at /home/user)"]
_KINDS = {".py": "python", ".json": "json", ".md": "markdown", ".txt": "text", ".csv": "csv", ".html": "html",
          ".js": "javascript", ".ts": "typescript", ".sh": "shell", ".yaml": "yaml", ".yml": "yaml",
          ".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "image", ".svg": "image"}
DEFAULT_EXCLUDES = [".git", "node_modules", "__pycache__", ".venv"]
TREE_LIMIT = 1000
MATCH_LIMIT = 500


def _kind(path: str) -> str:
    return _KINDS.get(posixpath.splitext(path)[1].lower(), "file")


async def _write(ctx: ToolContext, path: str, content: str) -> ToolResult:
    path = await ctx.path(path)
    await ctx.sandbox.files.write(path, content, user=ctx.user)
    size = len(content.encode())
    return ToolResult([TextContent(f"Wrote {path} ({human(size)})")],
                      data={"path": path, "size": size, "file_type": _kind(path)})


@tool(category="files")
async def save_file(ctx: ToolContext, path: Path, content: Annotated[str, "The whole text of the file"]) -> ToolResult:
    """Save text to a file in the sandbox (created with its parent directories, or overwritten) and
    return its path, size and type."""
    return await _write(ctx, path, content)


@tool(category="files")
async def write_file(ctx: ToolContext, path: Path, content: Annotated[str, "The whole text of the file"]) -> ToolResult:
    """Create a file or overwrite it completely with new text (parent directories are created). To
    change part of a file, use edit_file."""
    return await _write(ctx, path, content)


@tool(category="files")
async def read_file(ctx: ToolContext, path: Path,
                    offset: Annotated[int, "First line to return, from 1"] = 1,
                    limit: Annotated[int | None, "Most lines to return (default: as many as fit)"] = None,
                    ) -> ToolResult:
    """Read a text file from the sandbox. Long files come in pages: the answer says which lines it
    holds and the offset to continue from. Images (PNG, JPEG, GIF, WebP) come back as images; other
    binary files are refused."""
    return await read_for_model(ctx, await ctx.path(path), offset, limit)


@tool(category="files")
async def read_multiple_files(ctx: ToolContext,
                              paths: Annotated[list[str], Field(description="Paths of the files", min_length=1)],
                              ) -> ToolResult:
    """Read several text files at once; a file that cannot be read is reported in its place
    without failing the others."""
    parts, failed = [], 0
    for raw in paths:
        try:
            result = await read_for_model(ctx, await ctx.path(raw))
            parts.append(f"{raw}:\n{result.text}")
        except E.SandlotError as e:
            failed += 1
            parts.append(f"{raw}: error: {e.message}")
    text, _ = await ctx.limit("\n---\n".join(parts))
    return ToolResult([TextContent(text)], is_error=failed == len(paths), data={"files": len(paths), "failed": failed})


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_text: str = Field(description="Exact text to replace; must occur exactly once in the file", min_length=1)
    new_text: str = Field(description="Text to put in its place")


@tool(category="files")
async def edit_file(ctx: ToolContext, path: Path,
                    edits: Annotated[list[Edit], Field(description="Replacements, applied in order", min_length=1)],
                    dry_run: Annotated[bool, "Only show the diff, change nothing"] = False) -> ToolResult:
    """Change parts of a text file by exact text replacement and return a unified diff of the
    change. Each old_text must match exactly once (include surrounding lines to make it unique);
    if any edit does not match, nothing is written."""
    path = await ctx.path(path)
    diff = await ctx.sandbox.files.edit(path, [e.model_dump() for e in edits], dry_run=dry_run, user=ctx.user)
    text, _ = await ctx.limit(f"```diff\n{diff}```" if diff else "No change: the edits leave the file as it was.")
    return ToolResult([TextContent(("Dry run, nothing written:\n" if dry_run else "") + text)],
                      data={"path": path, "dry_run": dry_run, "changed": bool(diff)})


@tool(category="files")
async def delete_file(ctx: ToolContext, path: Path,
                      recursive: Annotated[bool, "Also delete a directory with everything in it"] = False,
                      ) -> ToolResult:
    """Delete a file (or, with recursive, a directory tree) in the sandbox."""
    path = await ctx.path(path)
    if posixpath.dirname(path) == "/" or path == "/":
        raise E.PermissionDenied(f"refusing to delete {path}")
    info = await ctx.sandbox.files.get_info(path, user=ctx.user)
    if info.type and info.type.value == "dir" and not recursive:
        raise E.InvalidArgument(f"{path} is a directory; pass recursive=true to delete it with its contents")
    await ctx.sandbox.files.remove(path, user=ctx.user)
    return ToolResult([TextContent(f"Deleted {path}")], data={"path": path, "deleted": True})


def _entry_line(e) -> str:
    kind = e.type.value if e.type else "other"
    return f"[DIR]  {e.name}/" if kind == "dir" else f"[FILE] {e.name} ({human(e.size)})"


@tool(category="files")
async def list_files(ctx: ToolContext, path: Annotated[str, "Directory to list"] = ".",
                     recursive: Annotated[bool, "Include everything below, not only direct children"] = False,
                     pattern: Annotated[str | None, "Glob on names, e.g. *.py"] = None) -> ToolResult:
    """List the files in a sandbox directory with their sizes, optionally recursively and filtered
    by a glob pattern."""
    path = await ctx.path(path)
    if recursive:
        found = await ctx.sandbox.files.glob(pattern or "*", path, exclude=DEFAULT_EXCLUDES, user=ctx.user)
        lines = [posixpath.relpath(m.path, path) + ("/" if m.type == "dir" else "") for m in found.entries]
        if found.truncated:
            lines.append(f"[... stopped at {len(found.entries)} entries]")
    else:
        entries = await ctx.sandbox.files.list(path, user=ctx.user)
        lines = [_entry_line(e) for e in sorted(entries, key=lambda e: e.name)
                 if pattern is None or fnmatch.fnmatchcase(e.name, pattern)]
    text, _ = await ctx.limit("\n".join(lines) or f"{path} is empty" + (" (for that pattern)" if pattern else ""))
    return ToolResult([TextContent(text)], data={"path": path, "count": len(lines)})


@tool(category="files")
async def list_directory(ctx: ToolContext, path: Annotated[str, "Directory to list"] = ".") -> ToolResult:
    """List the direct children of a directory, each marked [FILE] or [DIR]."""
    path = await ctx.path(path)
    entries = sorted(await ctx.sandbox.files.list(path, user=ctx.user), key=lambda e: e.name)
    text, _ = await ctx.limit("\n".join(map(_entry_line, entries)) or f"{path} is empty")
    return ToolResult([TextContent(text)], data={"path": path, "count": len(entries)})


@tool(category="files")
async def file_exists(ctx: ToolContext, path: Path) -> ToolResult:
    """Whether a file or directory exists in the sandbox."""
    path = await ctx.path(path)
    try:
        info = await ctx.sandbox.files.get_info(path, user=ctx.user)
    except E.FileNotFound:
        return ToolResult([TextContent(f"{path} does not exist")], data={"path": path, "exists": False})
    kind = info.type.value if info.type else "other"
    return ToolResult([TextContent(f"{path} exists ({kind})")], data={"path": path, "exists": True, "type": kind})


@tool(category="files")
async def copy_file(ctx: ToolContext, source: Path, destination: Path) -> ToolResult:
    """Copy a file or a directory tree inside the sandbox."""
    source, destination = await ctx.path(source, "source"), await ctx.path(destination, "destination")
    await ctx.sandbox.files.copy(source, destination, user=ctx.user)
    return ToolResult([TextContent(f"Copied {source} to {destination}")],
                      data={"source": source, "destination": destination})


@tool(category="files")
async def move_file(ctx: ToolContext, source: Path, destination: Path) -> ToolResult:
    """Move or rename a file or directory. Fails if the destination exists."""
    source, destination = await ctx.path(source, "source"), await ctx.path(destination, "destination")
    if await ctx.sandbox.files.exists(destination, user=ctx.user):
        raise E.AlreadyExists(f"{destination} already exists; delete it first or choose another name")
    await ctx.sandbox.files.rename(source, destination, user=ctx.user)
    return ToolResult([TextContent(f"Moved {source} to {destination}")],
                      data={"source": source, "destination": destination})


@tool(category="files")
async def create_directory(ctx: ToolContext, path: Path) -> ToolResult:
    """Create a directory and any missing parents; succeeds if it already exists."""
    path = await ctx.path(path)
    made = await ctx.sandbox.files.make_dir(path, user=ctx.user)
    return ToolResult([TextContent(f"Created {path}" if made else f"{path} already exists")],
                      data={"path": path, "created": made})


def _draw(nodes, prefix: str = "") -> list[str]:
    lines = []
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{node.name}{'/' if node.type == 'dir' else ''}")
        if node.children:
            lines += _draw(node.children, prefix + ("    " if last else "│   "))
    return lines


def _as_json(nodes) -> list[dict]:
    return [{"name": n.name, "type": n.type, **({"children": _as_json(n.children)} if n.children is not None else {})}
            for n in nodes]


@tool(category="files")
async def directory_tree(ctx: ToolContext, path: Annotated[str, "Directory at the root of the tree"] = ".",
                         depth: Annotated[int, Field(description="Levels to show", ge=1, le=20)] = 3) -> ToolResult:
    """Show the tree of files and directories under a path (.git, node_modules, __pycache__ and
    .venv left out)."""
    path = await ctx.path(path)
    tree = await ctx.sandbox.files.tree(path, depth=depth, exclude=DEFAULT_EXCLUDES, limit=TREE_LIMIT,
                                       user=ctx.user)
    lines = [path.rstrip("/") + "/", *_draw(tree.entries)]
    if tree.truncated:
        lines.append(f"[... stopped at {TREE_LIMIT} entries; show a subdirectory]")
    text, _ = await ctx.limit("\n".join(lines))
    return ToolResult([TextContent(text)], data={"path": path, "tree": _as_json(tree.entries)})


@tool(category="files")
async def search_files(ctx: ToolContext, path: Annotated[str, "Directory to search under"] = ".",
                       pattern: Annotated[str, "Glob for file names (*.py) or paths (src/**/*.ts)"] = "*",
                       content: Annotated[str | None, "Regular expression to find inside the files"] = None,
                       exclude_patterns: Annotated[list[str], "Globs of paths to leave out"] = [],  # noqa: B006
                       ignore_case: Annotated[bool, "Case-insensitive content search"] = False) -> ToolResult:
    """Find files by name (glob) under a directory, or, with content, the lines inside them that
    match a regular expression (file:line: text)."""
    path = await ctx.path(path)
    exclude = [*DEFAULT_EXCLUDES, *exclude_patterns]
    if content is None:
        found = await ctx.sandbox.files.glob(pattern, path, exclude=exclude, limit=MATCH_LIMIT, user=ctx.user)
        lines = [m.path + ("/" if m.type == "dir" else "") for m in found.entries]
    else:
        found = await ctx.sandbox.files.search(content, path, glob=pattern, exclude=exclude, ignore_case=ignore_case,
                                               limit=MATCH_LIMIT, user=ctx.user)
        lines = [f"{m.path}:{m.line}: {m.text}" for m in found.entries]
    if found.truncated:
        lines.append(f"[... stopped at {MATCH_LIMIT} matches; narrow the search]")
    text, _ = await ctx.limit("\n".join(lines) or "No matches")
    return ToolResult([TextContent(text)], data={"path": path, "matches": len(found.entries),
                                                 "truncated": found.truncated})


@tool(category="files")
async def get_file_info(ctx: ToolContext, path: Path) -> ToolResult:
    """Details of a file or directory: type, size, permissions, owner, modification time, and where a
    symlink points."""
    path = await ctx.path(path)
    info = await ctx.sandbox.files.get_info(path, user=ctx.user)
    data = {"path": info.path, "type": info.type.value if info.type else "other", "size": info.size,
            "permissions": info.permissions, "owner": info.owner, "group": info.group,
            "modified": info.modified_time.isoformat() if info.modified_time else None,
            "symlink_target": info.symlink_target}
    return ToolResult([TextContent(json.dumps(data, indent=2))], data=data)


@tool(category="files")
async def list_allowed_directories(ctx: ToolContext) -> ToolResult:
    """The directories these file tools may use."""
    dirs = list(ctx.settings.allowed_dirs or ("/",))
    return ToolResult([TextContent("Allowed directories:\n" + "\n".join(dirs))], data={"directories": dirs})
