"""`ToolContext`: what a tool implementation gets besides its arguments: the sandbox, the rules for
paths, and the output budget.

Paths. A model's path is resolved like the SDK resolves it (relative to /home/user) and refused when
malformed. With `allowed_dirs`, it must also lie inside one of them after the sandbox resolved its
symlinks (`realpath -m`, as the acting user), so a link cannot lead a tool out.

Output. Past `max_output_chars` a text is cut at a line boundary with a marker that says how to get
the rest: the full text is saved in the sandbox (under /tmp/sandlot-tool-output/) and read_file
pages through it. A temporary sandbox dies with the call, so there the marker only says how much
was cut.
"""

from __future__ import annotations

import posixpath
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _exceptions as E

HOME = "/home/user"  # the default user's home, where relative paths resolve (as in the SDK)
OUTPUT_DIR = "/tmp/sandlot-tool-output"
DEFAULT_MAX_OUTPUT_CHARS = 20_000
MAX_PATH_BYTES = 4096  # PATH_MAX, and a newline


@dataclass(frozen=True)
class Settings:
    """Options of a toolset that every tool sees."""

    allowed_dirs: tuple[str, ...] | None = None  # None: the whole filesystem (as the sandbox user)
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    user: str | None = None  # acting user in the sandbox (None: its default user)

    def __post_init__(self):
        if self.allowed_dirs is not None:
            dirs = tuple(posixpath.normpath(posixpath.join(HOME, d)) for d in self.allowed_dirs)
            object.__setattr__(self, "allowed_dirs", dirs)
        if not isinstance(self.max_output_chars, int) or self.max_output_chars < 200:
            raise E.InvalidArgument("max_output_chars must be a whole number of at least 200")


def _inside(path: str, dirs: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


@dataclass
class ToolContext:
    """Handed to a sandbox tool as its first argument: `sandbox` (an AsyncSandbox), `settings`, and
    helpers for paths and long outputs. `temporary` is true when the sandbox lives for this call only."""

    sandbox: Any
    settings: Settings = field(default_factory=Settings)
    temporary: bool = False

    @property
    def user(self) -> str | None:
        return self.settings.user

    async def path(self, path: str, what: str = "path") -> str:
        """An absolute, normalized path the tool may use; PathError otherwise."""
        if not isinstance(path, str) or not path.strip():
            raise E.PathError(f"{what} must be a non-empty string")
        if "\0" in path:
            raise E.PathError(f"{what} contains a NUL byte")
        if path == "~" or path.startswith("~/"):
            path = HOME + path[1:]
        resolved = posixpath.normpath(posixpath.join(HOME, path))
        dirs = self.settings.allowed_dirs
        if dirs is None or dirs == ("/",):
            return resolved
        if not _inside(resolved, dirs):
            raise E.PathError(f"{path} is outside the allowed directories ({', '.join(dirs)})")
        # realpath is the sandbox's: its root may make it print without end, so no more than a
        # path's worth is kept here (the command's timeout bounds how long it may go on)
        answer = bytearray()

        def keep(chunk: bytes) -> None:
            answer.extend(chunk[:MAX_PATH_BYTES + 1 - len(answer)])

        real = await self.sandbox.commands.run(f"realpath -m -- {shlex.quote(resolved)}", user=self.user,
                                               check=False, raw=True, on_stdout=keep)
        target = answer.decode(errors="replace").strip() if len(answer) <= MAX_PATH_BYTES else ""
        if real.exit_code != 0 or not target or not _inside(target, dirs):
            raise E.PathError(f"{path} leads outside the allowed directories (to {target or '?'})")
        return resolved

    async def limit(self, text: str, name: str = "output") -> tuple[str, dict | None]:
        """`text` cut to the output budget, with a marker; and, when cut, where the rest is."""
        budget = self.settings.max_output_chars
        if len(text) <= budget:
            return text, None
        head = text[:budget]
        lines = head.count("\n")
        if lines:  # cut after the last whole line that fits
            head = head[:head.rfind("\n") + 1]
        else:  # one enormous line: cut inside it
            lines = 0
        shown = len(head)
        info: dict = {"total_chars": len(text), "shown_chars": shown, "total_lines": text.count("\n") + 1}
        if self.temporary:
            marker = f"\n[... {name} truncated: {shown} of {len(text)} characters shown]"
        else:
            saved = f"{OUTPUT_DIR}/{name}-{uuid.uuid4().hex[:12]}.txt"
            await self.sandbox.files.write(saved, text, user=self.user)
            info["saved_to"] = saved
            marker = (f"\n[... {name} truncated: {shown} of {len(text)} characters shown. The full {name} is "
                      f"in {saved}; continue with read_file(path=\"{saved}\", offset={lines + 1})]")
        return head + marker, info
