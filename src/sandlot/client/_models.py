"""Plain data returned by the SDK. No I/O here: the sync and async surfaces share these classes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..protocol import filesystem_pb2 as fs_pb
from ..protocol import process_pb2 as proc_pb
from ..runtimes.policy import Limits

__all__ = [
    "CommandResult", "EntryInfo", "FileType", "FilesystemEvent", "FilesystemEventType", "Limits",
    "ProcessInfo", "SandboxInfo", "SandboxMetrics", "WriteInfo",
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

    @classmethod
    def from_json(cls, d: dict) -> SandboxInfo:
        return cls(
            sandbox_id=d["sandboxID"], template_id=d["templateID"], state=d.get("state", "running"),
            started_at=_time(d.get("startedAt")), end_at=_time(d.get("endAt")),
            metadata=dict(d.get("metadata") or {}), cpu_count=d.get("cpuCount", 0),
            memory_mb=d.get("memoryMB", 0), disk_size_mb=d.get("diskSizeMB", 0),
            envd_version=d.get("envdVersion", ""), alias=d.get("alias"))


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
    def from_json(cls, d: dict) -> SandboxMetrics:
        return cls(timestamp=_time(d.get("timestamp")), cpu_count=d.get("cpuCount", 0),
                   cpu_used_pct=d.get("cpuUsedPct", 0.0), mem_used=d.get("memUsed", 0),
                   mem_total=d.get("memTotal", 0), disk_used=d.get("diskUsed", 0),
                   disk_total=d.get("diskTotal", 0))


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
    def from_json(cls, d: dict) -> WriteInfo:
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
