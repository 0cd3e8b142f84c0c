"""What a template build is asked to do: E2B's TemplateBuildStartV2 body (the official SDK's
`Template()...` chain, or a Dockerfile the CLI turned into the same shape), checked and typed.

    {"fromImage" | "fromTemplate": str, "fromImageRegistry"?: {...}, "force"?: bool,
     "steps": [{"type": "RUN"|"COPY"|"ENV"|"WORKDIR"|"USER", "args": [str], "filesHash"?, "force"?}],
     "startCmd"?: str, "readyCmd"?: str}

The SDK sends pip/apt/npm installs, removes, renames and git clones as RUN steps: the server sees
only the five kinds above. The state a step runs with (user, working directory, env vars) is part of
its cache key, as is the layer below it (build_cache.step_key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import _exceptions as E

KINDS = ("RUN", "COPY", "ENV", "WORKDIR", "USER")
DEFAULT_USER = "user"  # E2B's defaults for steps (its Dockerfile parser switches to root itself)
DEFAULT_WORKDIR = "/home/user"
MAX_STEPS = 200
_HASH = re.compile(r"^[0-9a-f]{64}$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}(:[a-z_][a-z0-9_.-]{0,31})?$|^[0-9]{1,5}(:[0-9]{1,5})?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Step:
    kind: str
    args: tuple[str, ...]
    files_hash: str | None = None
    force: bool = False

    def describe(self) -> str:
        return f"{self.kind} {' '.join(self.args)}"[:300]


@dataclass(frozen=True)
class BuildSpec:
    from_image: str | None
    from_template: str | None
    steps: tuple[Step, ...] = ()
    force: bool = False
    start_cmd: str | None = None
    ready_cmd: str | None = None
    registry: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.from_template or self.from_image or ""

    def file_hashes(self) -> list[str]:
        return [s.files_hash for s in self.steps if s.files_hash]

    def uploads(self) -> set[str]:
        """The hashes of the uploaded files it names: its COPY steps' and an `upload:<hash>` image's."""
        image = self.from_image or ""
        return {*self.file_hashes(), *([image[len("upload:"):]] if image.startswith("upload:") else [])}


def _text(value) -> bool:
    """A string with no NUL that is text: a lone surrogate (JSON "\\udc80") cannot be stored, shown
    in the build's log or answered."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _str(value, what: str, *, empty: bool = False) -> str:
    if not _text(value) or (not value and not empty):
        raise E.InvalidArgument(f"{what} must be a non-empty string")
    return value


def parse(body: dict) -> BuildSpec:
    """The build's request, or InvalidArgument naming what is wrong."""
    from_image, from_template = body.get("fromImage"), body.get("fromTemplate")
    if from_template is not None:
        from_template = _str(from_template, "fromTemplate")
        from_image = None  # the SDK sends the default image along with a template
    elif from_image is not None:
        from_image = _str(from_image, "fromImage")
    else:
        raise E.InvalidArgument("a build needs fromImage or fromTemplate")
    raw_steps = body.get("steps") or []
    if not isinstance(raw_steps, list) or len(raw_steps) > MAX_STEPS:
        raise E.InvalidArgument(f"steps must be a list of at most {MAX_STEPS}")
    steps = tuple(_step(i + 1, s) for i, s in enumerate(raw_steps))
    start, ready = body.get("startCmd"), body.get("readyCmd")
    registry = body.get("fromImageRegistry") or {}
    if not isinstance(registry, dict):
        raise E.InvalidArgument("fromImageRegistry must be an object")
    return BuildSpec(from_image, from_template, steps, bool(body.get("force", False)),
                     _str(start, "startCmd") if start is not None else None,
                     _str(ready, "readyCmd") if ready is not None else None, registry)


def _step(number: int, raw) -> Step:
    if not isinstance(raw, dict):
        raise E.InvalidArgument(f"step {number} must be an object")
    kind = raw.get("type")
    if kind not in KINDS:
        raise E.InvalidArgument(f"step {number}: type {kind!r} is not supported (supported: {', '.join(KINDS)})")
    args = raw.get("args") or []
    if not isinstance(args, list) or not all(_text(a) for a in args):
        raise E.InvalidArgument(f"step {number}: args must be a list of strings")
    files_hash = raw.get("filesHash")
    if kind == "COPY":
        if len(args) < 2 or not args[0] or not args[1]:
            raise E.InvalidArgument(f"step {number}: COPY needs a source and a destination")
        if not isinstance(files_hash, str) or not _HASH.match(files_hash):
            raise E.InvalidArgument(f"step {number}: COPY needs the filesHash of its uploaded files")
        if len(args) > 2 and args[2] and not _USER.match(args[2]):
            raise E.InvalidArgument(f"step {number}: COPY owner {args[2]!r} is not a user[:group]")
        if len(args) > 3 and args[3] and not re.fullmatch(r"0?[0-7]{3,4}", args[3]):
            raise E.InvalidArgument(f"step {number}: COPY mode {args[3]!r} is not an octal mode")
    else:
        files_hash = None
    if kind == "RUN" and (not args or not args[0].strip()):
        raise E.InvalidArgument(f"step {number}: RUN needs a command")
    if kind == "RUN" and len(args) > 1 and args[1] and not _USER.match(args[1]):
        raise E.InvalidArgument(f"step {number}: RUN user {args[1]!r} is not a user name")
    if kind == "ENV" and (len(args) % 2 or not args or not all(_ENV_NAME.match(k) for k in args[::2])):
        raise E.InvalidArgument(f"step {number}: ENV needs name/value pairs with valid names")
    if kind == "WORKDIR" and (len(args) != 1 or not args[0].startswith("/")):
        raise E.InvalidArgument(f"step {number}: WORKDIR needs one absolute path")
    if kind == "USER" and (len(args) != 1 or not _USER.match(args[0])):
        raise E.InvalidArgument(f"step {number}: USER needs one user name")
    return Step(kind, tuple(args), files_hash, bool(raw.get("force", False)))
