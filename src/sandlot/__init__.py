"""sandlot: self-hosted sandboxes for AI agents.

    from sandlot import Sandbox

    with Sandbox.create() as sandbox:
        print(sandbox.commands.run("echo hi").stdout)

Layers: `client` is the SDK re-exported here (blocking `Sandbox`, `AsyncSandbox`); `server`,
`runtimes`, `agent` and `templates` make up the self-hosted service behind it; `cli` is the
`sandlot` command. Everything sandlot raises derives from `SandlotError`.
"""

from ._exceptions import (
    AlreadyExists,
    AuthenticationError,
    CommandExitError,
    FileNotFound,
    InvalidArgument,
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
from .client import (
    AsyncCommandHandle,
    AsyncSandbox,
    AsyncWatchHandle,
    CommandHandle,
    Sandbox,
    SandboxPaginator,
    WatchHandle,
)
from .client._models import (
    CodeContext,
    CommandResult,
    EntryInfo,
    Execution,
    ExecutionError,
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
    SandboxMetrics,
    WriteInfo,
)

__all__ = [
    "AlreadyExists",
    "AsyncCommandHandle",
    "AsyncSandbox",
    "AsyncWatchHandle",
    "AuthenticationError",
    "CodeContext",
    "CommandExitError",
    "CommandHandle",
    "CommandResult",
    "EntryInfo",
    "Execution",
    "ExecutionError",
    "FileNotFound",
    "FileType",
    "FilesystemEvent",
    "FilesystemEventType",
    "InvalidArgument",
    "Limits",
    "Logs",
    "NotFound",
    "OutputMessage",
    "Package",
    "PathError",
    "PermissionDenied",
    "ProcessInfo",
    "ResourceExhausted",
    "Result",
    "RuntimeFailure",
    "Sandbox",
    "SandboxInfo",
    "SandboxMetrics",
    "SandboxNotRunning",
    "SandboxPaginator",
    "SandlotError",
    "SandlotTimeoutError",
    "TemplateBuilding",
    "TemplateError",
    "TimeoutError",
    "Unsupported",
    "WatchHandle",
    "WriteInfo",
]
