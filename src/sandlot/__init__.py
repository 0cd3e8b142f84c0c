"""sandlot: self-hosted sandboxes for AI agents.

    from sandlot import Sandbox

    with Sandbox.create() as sandbox:
        print(sandbox.commands.run("echo hi").stdout)

Layers: `client` is the SDK re-exported here (blocking `Sandbox`, `AsyncSandbox`); `server`,
`runtimes`, `agent` and `templates` make up the self-hosted service behind it; `cli` is the
`sandlot` command. Everything sandlot raises derives from `SandlotError`.
"""

import importlib
from typing import TYPE_CHECKING

from ._exceptions import (
    AlreadyExists,
    AuthenticationError,
    CommandExitError,
    FileNotFound,
    InvalidArgument,
    McpGatewayError,
    NotFound,
    PathError,
    PermissionDenied,
    ResourceExhausted,
    RuntimeFailure,
    SandboxNotRunning,
    SandlotError,
    SandlotTimeoutError,
    TemplateBuilding,
    TemplateError,
    TimeoutError,
    Unsupported,
)

# The SDK (httpx, protobuf, connectrpc: ~0.35 s) is imported on first use of one of its names, so that
# `sandlot --help`, the server and the agent's host side do not pay for it (PEP 562).
if TYPE_CHECKING:
    from .client import (
        AsyncCodebase,
        AsyncCommandHandle,
        AsyncSandbox,
        AsyncSandboxService,
        AsyncSession,
        AsyncTemplate,
        AsyncVolume,
        AsyncWatchHandle,
        Codebase,
        CommandHandle,
        Sandbox,
        SandboxPaginator,
        SandboxService,
        Session,
        SnapshotExport,
        SnapshotInfo,
        Template,
        TemplateBuildInfo,
        TemplateInfo,
        TemplateLogEntry,
        Volume,
        VolumeInfo,
        WatchHandle,
    )
    from .client._codebases import CodebaseFile
    from .client._models import (
        CodeContext,
        CommandResult,
        EntryInfo,
        Execution,
        ExecutionError,
        ExposedPort,
        FilesystemEvent,
        FilesystemEventType,
        FileType,
        Limits,
        Logs,
        OutputMessage,
        Package,
        ProcessInfo,
        Result,
        SandboxInfo,
        SandboxLogEntry,
        SandboxMetrics,
        WriteInfo,
    )
    from .client._sessions import SessionInfo
    from .limits import SecurityPolicy
    from .permissions import Permission, PatternType, PermissionRule

_LAZY = {
    **dict.fromkeys(["AsyncCodebase", "AsyncCommandHandle", "AsyncSandbox", "AsyncSandboxService", "AsyncSession",
                     "AsyncTemplate", "AsyncVolume", "AsyncWatchHandle", "Codebase", "CommandHandle", "Sandbox",
                     "SandboxPaginator", "SandboxService", "Session", "SnapshotExport", "SnapshotInfo", "Template",
                     "TemplateBuildInfo", "TemplateInfo", "TemplateLogEntry", "Volume", "VolumeInfo",
                     "WatchHandle"], ".client"),
    "CodebaseFile": ".client._codebases",
    "SessionInfo": ".client._sessions",
    "SecurityPolicy": ".limits",
    **dict.fromkeys(["Permission", "PatternType", "PermissionRule"], ".permissions"),
    **dict.fromkeys(["CodeContext", "CommandResult", "EntryInfo", "Execution", "ExecutionError", "ExposedPort",
                     "FilesystemEvent", "FilesystemEventType", "FileType", "Limits", "Logs", "OutputMessage",
                     "Package", "ProcessInfo", "Result", "SandboxInfo", "SandboxLogEntry", "SandboxMetrics", "WriteInfo"],
                    ".client._models"),
}


def __getattr__(name: str):
    source = _LAZY.get(name)
    if source is None:
        raise AttributeError(f"module 'sandlot' has no attribute {name!r}")
    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AlreadyExists",
    "AsyncCodebase",
    "AsyncCommandHandle",
    "AsyncSandbox",
    "AsyncSandboxService",
    "AsyncSession",
    "AsyncTemplate",
    "AsyncVolume",
    "AsyncWatchHandle",
    "AuthenticationError",
    "CodeContext",
    "Codebase",
    "CodebaseFile",
    "CommandExitError",
    "CommandHandle",
    "CommandResult",
    "EntryInfo",
    "Execution",
    "ExecutionError",
    "ExposedPort",
    "FileNotFound",
    "FileType",
    "FilesystemEvent",
    "FilesystemEventType",
    "InvalidArgument",
    "Limits",
    "Logs",
    "McpGatewayError",
    "NotFound",
    "OutputMessage",
    "Package",
    "PathError",
    "PatternType",
    "Permission",
    "PermissionDenied",
    "PermissionRule",
    "ProcessInfo",
    "ResourceExhausted",
    "Result",
    "RuntimeFailure",
    "Sandbox",
    "SandboxInfo",
    "SandboxLogEntry",
    "SandboxMetrics",
    "SandboxNotRunning",
    "SandboxPaginator",
    "SandboxService",
    "SandlotError",
    "SandlotTimeoutError",
    "SecurityPolicy",
    "Session",
    "SessionInfo",
    "SnapshotExport",
    "SnapshotInfo",
    "Template",
    "TemplateBuildInfo",
    "TemplateBuilding",
    "TemplateError",
    "TemplateInfo",
    "TemplateLogEntry",
    "TimeoutError",
    "Unsupported",
    "Volume",
    "VolumeInfo",
    "WatchHandle",
    "WriteInfo",
]
