"""Path permissions inside a sandbox's workspace: the rule model, AgentFense's presets, and the one
decision function every check uses (the permission filesystem that serves the workspace to the
sandbox's processes, permfs/, and through it every files-API call, which the agent makes inside).

Stdlib only and shared, like limits.py: the SDK builds rules with it (client/), the server's policy
holds them (runtimes/policy.py), and the permission filesystem's daemon imports nothing else of
sandlot's.

Levels, weakest first:

    none   invisible: stat, open and lookup fail with ENOENT, listings leave it out
    view   listed with its metadata; its content cannot be read (EACCES)
    read   readable, not writable
    write  readable and writable: create, change, rename, delete

A rule is a pattern over paths relative to the workspace (``/src/main.py``) and a level. Patterns
(AgentFense's):

    glob       (default) segments separated by ``/``; ``*`` and ``?`` and ``[..]`` match within one
               segment, ``**`` matches any number of segments (none included). A pattern that does
               not start with ``/`` or ``**`` is anchored at the root (``*.txt``: top level only).
               ``/secrets/**`` matches ``/secrets`` itself and everything below it.
    directory  ``/docs/``: the directory and everything below it
    file       ``/config.yaml``: exactly that path

Precedence, when several rules match a path (AgentFense's order; the first difference decides):

    1. the higher ``priority`` (default 0)
    2. the more specific kind: file, then directory, then glob
    3. the more specific pattern: anchored at the root (``/..``) over floating (``**/..``), a longer
       literal part before the first wildcard, and a pattern without wildcards over one with them
    4. the rule listed later: explicit rules come after a preset's, so at equal rank they win

No rule matching means ``none``; the workspace's root itself is always at least ``view``. A
directory whose own rule says ``none`` is still ``view`` when a rule that outranks that one could
grant something below it: ``/secrets/** none`` with ``/secrets/public.key read`` at a higher
priority shows ``/secrets`` (listing only ``public.key``), while agent-safe's ``**/* read`` (priority
0) does not reopen its ``**/secrets/** none`` (priority 100).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from enum import Enum

NONE, VIEW, READ, WRITE = 0, 1, 2, 3
LEVELS = {"none": NONE, "view": VIEW, "read": READ, "write": WRITE}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}
KINDS = ("glob", "directory", "file")
_KIND_RANK = {"glob": 1, "directory": 2, "file": 3}
MAX_RULES = 1000
MAX_PATTERN = 4096
MAX_CACHED, MAX_CACHED_CHARS = 65536, 4_000_000  # decisions a rule set remembers (the daemon has one per workspace)


class RuleError(ValueError):
    """A rule or preset that cannot be used (the caller turns it into InvalidArgument)."""


class Permission(str, Enum):
    """A level, by AgentFense's name (``Permission.READ == "read"``)."""

    NONE = "none"
    VIEW = "view"
    READ = "read"
    WRITE = "write"


class PatternType(str, Enum):
    """How a rule's pattern matches (AgentFense's names)."""

    GLOB = "glob"
    DIRECTORY = "directory"
    FILE = "file"


@dataclass(frozen=True)
class Rule:
    """One permission rule (AgentFense's PermissionRule): ``pattern`` (see the module doc),
    ``permission`` ("none", "view", "read", "write" or a Permission), ``type`` ("glob",
    "directory", "file" or a PatternType), ``priority`` (higher wins)."""

    pattern: str
    permission: str = "read"
    type: str = "glob"
    priority: int = 0

    def __post_init__(self):
        for name in ("permission", "type"):  # enum members are stored as their plain values
            value = getattr(self, name)
            if isinstance(value, Enum):
                object.__setattr__(self, name, value.value)
        if not isinstance(self.pattern, str) or not self.pattern or len(self.pattern) > MAX_PATTERN \
                or "\0" in self.pattern:
            raise RuleError(f"a rule's pattern must be a non-empty string (at most {MAX_PATTERN} characters)")
        try:
            self.pattern.encode()  # a lone surrogate (JSON "\udc80") is not text: it cannot be stored
        except UnicodeEncodeError:
            raise RuleError("a rule's pattern must be text (a name that is not UTF-8: match it with a "
                            "wildcard)") from None
        if self.permission not in LEVELS:
            raise RuleError(f"unknown permission {self.permission!r}: use one of {', '.join(LEVELS)}")
        if self.type not in KINDS:
            raise RuleError(f"unknown pattern type {self.type!r}: use one of {', '.join(KINDS)}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool) or abs(self.priority) > 10 ** 9:
            raise RuleError("a rule's priority must be an integer")
        # "." and ".." never match (paths are normalized): a rule with them would silently do nothing
        if any(seg in (".", "..") for seg in self.pattern.split("/")):
            raise RuleError(f"a rule's pattern cannot contain . or .. segments: {self.pattern!r}")
        try:
            _Compiled(self, 0)
        except re.error as e:
            raise RuleError(f"bad pattern {self.pattern!r}: {e}") from None

    def to_json(self) -> dict:
        return {"pattern": self.pattern, "permission": self.permission, "type": self.type, "priority": self.priority}

    @classmethod
    def from_json(cls, data) -> Rule:
        """From a Rule, or AgentFense's dictionary form {"pattern", "permission", "priority"?, "type"?}."""
        if isinstance(data, Rule):
            return data
        if not isinstance(data, dict):
            raise RuleError("a rule is an object with a pattern and a permission")
        unknown = set(data) - {"pattern", "permission", "priority", "type"}
        if unknown:
            raise RuleError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        permission, kind = data.get("permission", "read"), data.get("type", "glob")
        return cls(pattern=data.get("pattern"), permission=str(getattr(permission, "value", permission)).lower(),
                   type=str(getattr(kind, "value", kind)).lower(), priority=data.get("priority", 0))


PermissionRule = Rule  # AgentFense's name


def resolve(preset: str | None = None, rules=()) -> tuple[Rule, ...]:
    """A preset's rules (none for None) followed by the explicit ones."""
    if preset is not None and preset not in PRESETS:
        raise RuleError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    found = (*(PRESETS[preset] if preset else ()), *(Rule.from_json(r) for r in rules))
    if len(found) > MAX_RULES:
        raise RuleError(f"at most {MAX_RULES} rules")
    return found


def normalize(path: str) -> str:
    """A workspace-relative path as rules see it: ``/a/b`` (``/`` for the root)."""
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return "/" + "/".join(out)


def _segments(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class _Compiled:
    """A rule made ready to match: its pattern as segments, and its rank."""

    __slots__ = ("rule", "level", "segments", "exact", "rank", "match")

    def __init__(self, rule: Rule, index: int):
        self.rule, self.level = rule, LEVELS[rule.permission]
        pattern = rule.pattern
        if rule.type == "glob" and not pattern.startswith(("/", "**")):
            pattern = "/" + pattern  # anchored at the root, as AgentFense reads it
        segs = _segments(pattern)
        if rule.type == "directory":
            segs = [*segs, "**"]
        self.exact = "/" + "/".join(segs) if rule.type == "file" else None
        self.segments = [s if s == "**" else s.replace("**", "*") for s in segs]
        self.rank = (rule.priority, _KIND_RANK[rule.type], _specificity(rule.pattern), index)
        self.match = self._compile()

    def _compile(self):
        if self.exact is not None:
            return None
        pieces = ["(?:/[^/]+)*" if seg == "**" else "/" + _segment_regex(seg) for seg in self.segments]
        return re.compile("".join(pieces) + r"\Z", re.S).match

    def matches(self, path: str) -> bool:
        if self.exact is not None:
            return path == self.exact
        return path != "/" and self.match(path) is not None or (path == "/" and not self._needs_segment())

    def _needs_segment(self) -> bool:
        return any(s != "**" for s in self.segments)

    def could_match_below(self, directory: list[str]) -> bool:
        """Whether some path strictly below ``directory`` (as segments) could match this rule."""
        if self.exact is not None:
            segs = _segments(self.exact)
            return len(segs) > len(directory) and segs[:len(directory)] == directory
        return _extends(self.segments, directory)


def _segment_regex(seg: str) -> str:
    """One glob segment as a regular expression that never matches a ``/``."""
    out, i, n = [], 0, len(seg)
    while i < n:
        c = seg[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + (1 if i < n and seg[i] in "!^" else 0)
            j += 1 if j < n and seg[j] == "]" else 0
            while j < n and seg[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape("["))
                continue
            body, i = seg[i:j], j + 1
            negated = body[:1] in ("!", "^")
            body = (body[1:] if negated else body).replace("\\", "\\\\").replace("[", "\\[")
            out.append(("[^/" if negated else "(?!/)[") + body + "]")  # a range may span "/"
        else:
            out.append(re.escape(c))
    return "".join(out)


def _extends(pattern: list[str], path: list[str]) -> bool:
    """Whether ``pattern`` can match ``path`` followed by at least one more segment."""
    if not path:
        return bool(pattern)
    if not pattern:
        return False
    if pattern[0] == "**":
        return _extends(pattern[1:], path) or _extends(pattern, path[1:])
    return fnmatch.fnmatchcase(path[0], pattern[0]) and _extends(pattern[1:], path[1:])


def _specificity(pattern: str) -> int:
    """AgentFense's measure: anchored, literal prefix length, no wildcards."""
    score = 0
    if pattern.startswith("/"):
        score += 100
    if not pattern.startswith("**"):
        score += 50
    wild = min((i for i, c in enumerate(pattern) if c in "*?["), default=-1)
    if wild > 0:
        score += wild
    if wild < 0:
        score += 200 + len(pattern)
    return score


class Permissions:
    """A rule set, compiled: ``level(path)`` for a file, ``dir_level(path)`` for a directory (the
    implied ``view`` included). Decisions are cached; make a new one when the rules change."""

    def __init__(self, rules=()):
        compiled = [_Compiled(r, i) for i, r in enumerate(rules)]
        self.rules = tuple(rules)
        self._ordered = sorted(compiled, key=lambda c: c.rank, reverse=True)
        self._cache: dict[tuple[str, bool], int] = {}
        self._cached_chars = 0

    @classmethod
    def of(cls, preset: str | None = None, rules=()) -> Permissions:
        return cls(resolve(preset, rules))

    def _decide(self, path: str) -> tuple[int, int]:
        """(level, index in the ranked order of the deciding rule; len(rules) if none matched)."""
        for i, c in enumerate(self._ordered):
            if c.matches(path):
                return c.level, i
        return NONE, len(self._ordered)

    def level(self, path: str, is_dir: bool = False) -> int:
        """The level of a workspace-relative path (normalized: see normalize())."""
        key = (path, is_dir)
        found = self._cache.get(key)
        if found is None:
            # bounded in entries and in characters: a sandbox can ask about paths of ~4,000 each
            if len(self._cache) > MAX_CACHED or self._cached_chars > MAX_CACHED_CHARS:
                self._cache.clear()
                self._cached_chars = 0
            found = self._cache[key] = self._compute(path, is_dir)
            self._cached_chars += len(path)
        return found

    def dir_level(self, path: str) -> int:
        return self.level(path, True)

    def _compute(self, path: str, is_dir: bool) -> int:
        level, winner = self._decide(path)
        if path == "/":
            return max(level, VIEW)
        if level == NONE and is_dir:
            segs = _segments(path)
            if any(c.level > NONE and c.could_match_below(segs) for c in self._ordered[:winner]):
                return VIEW
        return level

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.rules]


# below the matcher: a Rule compiles its pattern when it is made
def _rules(*specs) -> tuple[Rule, ...]:
    return tuple(Rule(p, level, priority=priority) for p, level, priority in specs)


_SECRETS = (("**/.env*", "none", 100), ("**/secrets/**", "none", 100), ("**/*.key", "none", 100),
            ("**/*.pem", "none", 100))

# AgentFense's presets, with its rules and priorities.
PRESETS: dict[str, tuple[Rule, ...]] = {
    "view-only": _rules(("**/*", "view", 0)),
    "read-only": _rules(("**/*", "read", 0)),
    "agent-safe": _rules(("**/*", "read", 0), ("/output/**", "write", 10), ("/tmp/**", "write", 10),
                         *_SECRETS, ("**/credentials*", "none", 100), ("**/.git/**", "none", 50)),
    "development": _rules(("**/*", "write", 0), *_SECRETS),
    "full-access": _rules(("**/*", "write", 0)),
}
DEFAULT_PRESET = "view-only"
