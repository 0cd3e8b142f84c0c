"""Plain data returned by the SDK. No I/O here: the sync and async surfaces share these classes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..protocol import filesystem_pb2 as fs_pb
from ..protocol import process_pb2 as proc_pb
from ..limits import Limits
from ._network import shown

__all__ = [
    "CodeContext", "CommandResult", "EntryInfo", "Execution", "ExecutionError", "ExposedPort", "FileType", "FilesystemEvent",
    "FilesystemEventType", "Limits", "Logs", "OutputMessage", "Package", "ProcessInfo", "Result", "SandboxInfo",
    "SandboxMetrics", "WriteInfo",
]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class SandboxInfo:
    """What the control plane knows about a sandbox (`get_info()`, `list()`)."""

    sandbox_id: str
    template_id: str
    state: str  # "running" or "paused"
    started_at: datetime | None
    end_at: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    cpu_count: int = 0
    memory_mb: int = 0
    disk_size_mb: int = 0
    envd_version: str = ""
    alias: str | None = None
    allow_internet_access: bool = False  # true only for egress open to the whole internet
    network: dict[str, Any] = field(default_factory=dict)
    """The network it was given, in `create(network=...)`'s keys (`allow_out`, `deny_out`,
    `dns_servers`, `rules` with header values `<redacted>`, `egress_proxy` without password...)."""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxInfo:
        return cls(
            sandbox_id=d["sandboxID"], template_id=d["templateID"], state=d.get("state", "running"),
            started_at=_time(d.get("startedAt")), end_at=_time(d.get("endAt")),
            metadata=dict(d.get("metadata") or {}), cpu_count=d.get("cpuCount", 0),
            memory_mb=d.get("memoryMB", 0), disk_size_mb=d.get("diskSizeMB", 0),
            envd_version=d.get("envdVersion", ""), alias=d.get("alias"),
            allow_internet_access=bool(d.get("allowInternetAccess")), network=shown(d.get("network")))


@dataclass(frozen=True)
class ExposedPort:
    """A port of a sandbox with a signed preview URL (`list_exposed_ports()`)."""

    port: int
    url: str  # http://{port}-{sandbox id}-{token}.{domain}
    expires_at: datetime

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExposedPort:
        return cls(port=d["port"], url=d["url"], expires_at=datetime.fromtimestamp(d["expiresAt"], timezone.utc))


@dataclass(frozen=True)
class SandboxMetrics:
    """One resource-usage sample of a sandbox."""

    timestamp: datetime | None
    cpu_count: int
    cpu_used_pct: float
    mem_used: int
    mem_total: int
    disk_used: int
    disk_total: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxMetrics:
        return cls(timestamp=_time(d.get("timestamp")), cpu_count=d.get("cpuCount", 0),
                   cpu_used_pct=d.get("cpuUsedPct", 0.0), mem_used=d.get("memUsed", 0),
                   mem_total=d.get("memTotal", 0), disk_used=d.get("diskUsed", 0),
                   disk_total=d.get("diskTotal", 0))


@dataclass(frozen=True)
class SandboxLogEntry:
    """One entry of a sandbox's log: a lifecycle event or a process start or end (`fields["logger"]`
    says which: "lifecycle" or "process")."""

    timestamp: datetime | None
    level: str  # debug, info, warn, error
    message: str
    fields: dict[str, str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxLogEntry:
        return cls(timestamp=_time(d.get("timestamp")), level=d.get("level", "info"), message=d.get("message", ""),
                   fields=dict(d.get("fields") or {}))


@dataclass(frozen=True)
class CommandResult:
    """The outcome of a finished command.

    `success` is `exit_code == 0`; `duration` is wall-clock seconds seen by the client.
    """

    stdout: str
    stderr: str
    exit_code: int
    error: str | None = None
    duration: float = 0.0

    @property
    def success(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class ProcessInfo:
    """A process running in the sandbox (`commands.list()`)."""

    pid: int
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str | None = None
    tag: str | None = None

    @classmethod
    def from_proto(cls, p: proc_pb.ProcessInfo) -> ProcessInfo:
        c = p.config
        return cls(pid=p.pid, cmd=c.cmd, args=list(c.args), envs=dict(c.envs),
                   cwd=c.cwd if c.HasField("cwd") else None, tag=p.tag if p.HasField("tag") else None)


@dataclass(frozen=True)
class Package:
    """A Python package installed in a sandbox (`packages.list()`, `packages.install()`)."""

    name: str
    version: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Package:
        return cls(name=str(d["name"]), version=str(d["version"]))


class FileType(str, enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


_FILE_TYPES = {fs_pb.FILE_TYPE_FILE: FileType.FILE, fs_pb.FILE_TYPE_DIRECTORY: FileType.DIR,
               fs_pb.FILE_TYPE_SYMLINK: FileType.SYMLINK}


@dataclass(frozen=True)
class EntryInfo:
    """A file, directory or symlink in the sandbox. `mode` holds the permission bits only."""

    name: str
    path: str
    type: FileType | None
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_time: datetime | None = None
    symlink_target: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, e: fs_pb.EntryInfo) -> EntryInfo:
        mtime = e.modified_time.ToDatetime(tzinfo=timezone.utc) if e.HasField("modified_time") else None
        return cls(name=e.name, path=e.path, type=_FILE_TYPES.get(e.type), size=e.size, mode=e.mode,
                   permissions=e.permissions, owner=e.owner, group=e.group, modified_time=mtime,
                   symlink_target=e.symlink_target if e.HasField("symlink_target") else None,
                   metadata=dict(e.metadata))


@dataclass(frozen=True)
class WriteInfo:
    """Where an upload landed (`files.write()`)."""

    name: str
    path: str
    type: FileType | None = FileType.FILE

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WriteInfo:
        return cls(name=d["name"], path=d["path"],
                   type=FileType(d["type"]) if d.get("type") in ("file", "dir") else None)


class FilesystemEventType(str, enum.Enum):
    CREATE = "create"
    WRITE = "write"
    REMOVE = "remove"
    RENAME = "rename"
    CHMOD = "chmod"


_EVENT_TYPES = {fs_pb.EVENT_TYPE_CREATE: FilesystemEventType.CREATE,
                fs_pb.EVENT_TYPE_WRITE: FilesystemEventType.WRITE,
                fs_pb.EVENT_TYPE_REMOVE: FilesystemEventType.REMOVE,
                fs_pb.EVENT_TYPE_RENAME: FilesystemEventType.RENAME,
                fs_pb.EVENT_TYPE_CHMOD: FilesystemEventType.CHMOD}


@dataclass(frozen=True)
class FilesystemEvent:
    """A change under a watched directory; `name` is relative to it."""

    name: str
    type: FilesystemEventType

    @classmethod
    def from_proto(cls, e: fs_pb.FilesystemEvent) -> FilesystemEvent | None:
        kind = _EVENT_TYPES.get(e.type)
        return cls(name=e.name, type=kind) if kind else None


# --- code interpreter (sandbox.run_code(), code contexts): E2B's shapes, docs/e2b.md §4 ---

_RESULT_FORMATS = ("text", "html", "markdown", "svg", "png", "jpeg", "pdf", "latex", "json", "javascript",
                   "data", "chart")


@dataclass(frozen=True)
class CodeContext:
    """An isolated code state (one kernel): `create_code_context()`, `list_code_contexts()`."""

    id: str
    language: str
    cwd: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CodeContext:
        return cls(id=str(d["id"]), language=str(d.get("language", "")), cwd=str(d.get("cwd", "")))


@dataclass(frozen=True)
class OutputMessage:
    """A chunk of stdout or stderr of `run_code()`, handed to `on_stdout` / `on_stderr` as it arrives.
    `timestamp` is passed on as the server sent it (an ISO-8601 string from sandlot's server)."""

    line: str
    timestamp: str | int | None = None
    error: bool = False  # True for stderr

    def __str__(self) -> str:
        return self.line


@dataclass(frozen=True)
class ExecutionError:
    """An exception raised by the code: its class name, message and the formatted traceback (with
    the kernel's ANSI colours)."""

    name: str
    value: str
    traceback: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExecutionError:
        return cls(name=str(d.get("name") or ""), value=str(d.get("value") or ""),
                   traceback=str(d.get("traceback") or ""))


@dataclass(frozen=True, repr=False)
class Result:
    """One displayed value: the cell's own value (`is_main_result`) or a display call (a plot, a
    `display()`). Each representation is None unless present: `png`/`jpeg`/`pdf` are base64,
    `data` is a DataFrame as {column: [values]}, `chart` a matplotlib figure described as data
    (E2B's chart structure: type, title, elements, ...); other MIME types land in `extra`."""

    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    svg: str | None = None
    png: str | None = None
    jpeg: str | None = None
    pdf: str | None = None
    latex: str | None = None
    json: dict[str, Any] | list[Any] | None = None
    javascript: str | None = None
    data: dict[str, Any] | None = None
    chart: dict[str, Any] | None = None
    is_main_result: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Result:
        """A result line of /execute; keys this SDK does not know are ignored."""
        known = {k: d[k] for k in _RESULT_FORMATS if d.get(k) is not None}
        return cls(**known, is_main_result=bool(d.get("is_main_result")),
                   extra=dict(d["extra"]) if isinstance(d.get("extra"), dict) else {})

    def formats(self) -> list[str]:
        """The representations present, e.g. ["text", "png", "chart"], then the keys of `extra`."""
        return [k for k in _RESULT_FORMATS if getattr(self, k) is not None] + list(self.extra)

    def __repr__(self) -> str:
        if self.text is not None:
            return f"Result({self.text[:200]!r})"
        return f"Result(formats: {', '.join(self.formats())})"


@dataclass(frozen=True)
class Logs:
    """What the code printed, chunk by chunk as it arrived."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Execution:
    """The outcome of `run_code()`: displayed `results`, printed `logs`, the `error` the code raised
    (None if it ran through) and the context's `execution_count`."""

    results: list[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: ExecutionError | None = None
    execution_count: int | None = None

    @property
    def text(self) -> str | None:
        """The text of the main result (the value of the code's last expression), if any."""
        return next((r.text for r in self.results if r.is_main_result), None)
