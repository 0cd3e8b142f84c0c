"""`files.edit()`, `files.glob()`, `files.search()`, `files.tree()`: what agents ask of a filesystem
beyond read and write.

`edit` is done here (read, replace, diff, write). The walks run *inside* the sandbox, as the acting
user, in one `python3` process (every template has python3; stdlib only): listing a whole tree over
the files RPC would ship every entry to the client, and the user's own permissions then decide what
is visible. Symlinked directories are not followed (no loops, no walking out of the tree).
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _exceptions as E

if TYPE_CHECKING:
    from ._commands import AsyncCommands

# one edit: {"old_text": ..., "new_text": ...} or an (old, new) pair
Edit = Mapping[str, str] | tuple[str, str]

DEFAULT_LIMIT = 1000

# Runs in the sandbox: `python3 -c WALK '{"op": ...}'`, prints one JSON object.
WALK = r'''
import json, os, re, sys

def seg(p):
    out, i = "", 0
    while i < len(p):
        c = p[i]
        if c == "*": out += "[^/]*"
        elif c == "?": out += "[^/]"
        elif c == "[" and p.find("]", i + 2) > 0:
            j = p.find("]", i + 2)
            body = p[i + 1:j].replace("\\", "\\\\")
            out += "[" + ("^" + body[1:] if body[:1] == "!" else body) + "]"
            i = j
        else: out += re.escape(c)
        i += 1
    return out

def glob(p):
    parts = p.strip("/").split("/")
    if len(parts) == 1:
        parts = ["**"] + parts  # a bare name pattern matches at any depth
    out = ""
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        out += (".*" if last else "(?:.*/)?") if part == "**" else seg(part) + ("" if last else "/")
    return re.compile("(?s:" + out + r")\Z")

a = json.loads(sys.argv[1])
root = os.path.abspath(os.path.expanduser(a["path"]))
if not os.path.isdir(root):
    print(json.dumps({"error": ("not_found" if not os.path.exists(root) else "not_a_directory"), "path": root}))
    sys.exit(0)
excl = [glob(x) for x in a.get("exclude") or ()]
pat = glob(a["pattern"]) if a.get("pattern") else None
rx = re.compile(a["regex"], re.I if a.get("ignore_case") else 0) if a.get("regex") is not None else None
limit, depth, out, skipped = a["limit"], a.get("depth") or 10 ** 6, [], 0

class Full(Exception): pass

def add(x):
    if len(out) >= limit: raise Full
    out.append(x)

def grep(full, rel):
    global skipped
    try:
        if os.path.getsize(full) > a["max_bytes"]:
            skipped += 1; return
        with open(full, "rb") as f:
            data = f.read()
    except OSError:
        skipped += 1; return
    if b"\0" in data[:8192]:
        return
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if rx.search(line):
            add({"path": full, "line": n, "text": line[:400]})

def walk(d, rel, level, node):
    try:
        items = sorted(os.scandir(d), key=lambda e: e.name)
    except OSError:
        return
    for e in items:
        r = rel + "/" + e.name if rel else e.name
        if any(x.match(r) for x in excl):
            continue
        is_dir = e.is_dir(follow_symlinks=False)
        kind = "dir" if is_dir else "symlink" if e.is_symlink() else "file"
        if a["op"] == "tree":
            child = {"name": e.name, "type": kind}
            if is_dir and level < depth:
                child["children"] = []
            add(child); node.append(child)
            if "children" in child:
                walk(e.path, r, level + 1, child["children"])
            continue
        if a["op"] == "glob" and pat.match(r):
            add({"path": e.path, "type": kind})
        if a["op"] == "search" and kind == "file" and (pat is None or pat.match(r)):
            grep(e.path, r)
        if is_dir and level < depth:
            walk(e.path, r, level + 1, node)

tree, truncated = [], False
try:
    walk(root, "", 1, tree)
except Full:
    truncated = True
print(json.dumps({"path": root, "truncated": truncated, "skipped": skipped,
                  "entries": tree if a["op"] == "tree" else out}))
'''


@dataclass(frozen=True)
class GlobMatch:
    """A path that matched `files.glob()`."""

    path: str
    type: str  # "file", "dir" or "symlink" (a link is reported, not followed)


@dataclass(frozen=True)
class SearchMatch:
    """A line that matched `files.search()`: absolute path, 1-based line number, the line (cut at 400
    characters)."""

    path: str
    line: int
    text: str


@dataclass(frozen=True)
class TreeNode:
    """A node of `files.tree()`; `children` is None for files and for directories at the depth limit."""

    name: str
    type: str
    children: list[TreeNode] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TreeNode:
        kids = d.get("children")
        return cls(d["name"], d["type"], None if kids is None else [cls.from_json(k) for k in kids])


@dataclass(frozen=True)
class WalkResult:
    """Matches of a walk; `truncated` when `limit` cut it short, `skipped` counts files a search could
    not read or that were larger than `max_bytes`."""

    path: str
    entries: list[Any] = field(default_factory=list)
    truncated: bool = False
    skipped: int = 0


async def walk(commands: AsyncCommands, op: str, path: str, user: str | None, limit: int, **args: Any) -> WalkResult:
    if not isinstance(limit, int) or limit < 1:
        raise E.InvalidArgument(f"limit must be a whole number above 0, got {limit!r}")
    if not isinstance(path, str) or not path or "\0" in path:
        raise E.PathError(f"not a usable path: {path!r}")
    request = json.dumps({"op": op, "path": path, "limit": limit, **args})
    result = await commands.run(f"python3 -c {shlex.quote(WALK)} {shlex.quote(request)}", user=user,
                                timeout=120, check=False)
    if result.exit_code != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.exit_code}"])[-1]
        if last.startswith("re.error"):
            raise E.InvalidArgument(f"bad regular expression: {last.partition(': ')[2]}")
        raise E.SandlotError(f"walking {path} failed: {last}")
    data = json.loads(result.stdout)
    if data.get("error") == "not_found":
        raise E.FileNotFound(f"no such directory: {data['path']}")
    if data.get("error"):
        raise E.InvalidArgument(f"not a directory: {data['path']}")
    return WalkResult(data["path"], data["entries"], data["truncated"], data["skipped"])


def _edits(edits: Iterable[Edit]) -> list[tuple[str, str]]:
    pairs = []
    for edit in edits:
        if isinstance(edit, Mapping):
            old, new = edit.get("old_text"), edit.get("new_text")
        elif isinstance(edit, (tuple, list)) and len(edit) == 2:
            old, new = edit
        else:
            raise E.InvalidArgument(f"an edit is {{'old_text': ..., 'new_text': ...}} or an (old, new) pair, "
                                    f"got {edit!r}")
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            raise E.InvalidArgument("each edit needs a non-empty old_text and a new_text string")
        pairs.append((old, new))
    if not pairs:
        raise E.InvalidArgument("no edits given")
    return pairs


def apply_edits(path: str, text: str, edits: Iterable[Edit]) -> tuple[str, str]:
    """The edited text and a unified diff. Each old text must occur exactly once in the text as
    edited so far, so an edit never lands somewhere the caller did not mean."""
    new = text
    for i, (old, replacement) in enumerate(_edits(edits), 1):
        count = new.count(old)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times (add surrounding lines to make it unique)"
            raise E.InvalidArgument(f"edit {i}: old_text {where} in {path}")
        new = new.replace(old, replacement, 1)
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"a/{path.lstrip('/')}", f"b/{path.lstrip('/')}"))
    return new, diff
