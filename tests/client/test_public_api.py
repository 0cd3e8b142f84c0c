"""The curated public API: `sandlot.__all__`, and the blocking surface mirroring the async one."""

from __future__ import annotations

import inspect
import re
import typing

import pytest

import sandlot
from sandlot import _exceptions
from sandlot.client import (
    AsyncCodebase, AsyncCommandHandle, AsyncCommands, AsyncFiles, AsyncPackages, AsyncPty, AsyncSandbox,
    AsyncSandboxPaginator, AsyncSandboxService, AsyncSession, AsyncSessionFiles, AsyncTemplate, AsyncVolume,
    AsyncWatchHandle, Codebase, CommandHandle, Commands, Files, Packages, Pty, Sandbox, SandboxPaginator,
    SandboxService, Session, SessionFiles, Template, Volume, WatchHandle,
)
from sandlot.client._config import ConnectionConfig
from sandlot.client._http import Transport

EXPECTED = {
    # SDK
    "Sandbox", "AsyncSandbox", "SandboxPaginator", "CommandHandle", "AsyncCommandHandle", "WatchHandle",
    "AsyncWatchHandle", "SandboxService", "AsyncSandboxService", "Session", "AsyncSession", "Codebase",
    "AsyncCodebase", "Volume", "AsyncVolume", "Template", "AsyncTemplate",
    # data
    "CommandResult", "EntryInfo", "ExposedPort", "FileType", "FilesystemEvent", "FilesystemEventType", "Limits",
    "Package", "ProcessInfo", "SandboxInfo", "SandboxLogEntry", "SandboxMetrics", "SessionInfo", "WriteInfo",
    "CodebaseFile",
    # data: path permissions and policy
    "Permission", "PatternType", "PermissionRule", "SecurityPolicy",
    # data: snapshots and volumes
    "SnapshotExport", "SnapshotInfo", "VolumeInfo",
    # data: templates built from recipes
    "TemplateBuildInfo", "TemplateInfo", "TemplateLogEntry",
    # data: code interpreter
    "CodeContext", "Execution", "ExecutionError", "Logs", "OutputMessage", "Result",
    # errors
    "SandlotError", "InvalidArgument", "PathError", "AuthenticationError", "PermissionDenied", "NotFound",
    "FileNotFound", "AlreadyExists", "SandboxNotRunning", "SandlotTimeoutError", "TimeoutError", "ResourceExhausted",
    "CommandExitError", "McpGatewayError", "RuntimeFailure", "TemplateBuilding", "TemplateError", "Unsupported",
}

PAIRS = [(Sandbox, AsyncSandbox), (SandboxPaginator, AsyncSandboxPaginator), (Commands, AsyncCommands),
         (CommandHandle, AsyncCommandHandle), (Files, AsyncFiles), (WatchHandle, AsyncWatchHandle),
         (Pty, AsyncPty), (Packages, AsyncPackages), (SandboxService, AsyncSandboxService), (Session, AsyncSession),
         (SessionFiles, AsyncSessionFiles), (Codebase, AsyncCodebase), (Volume, AsyncVolume),
         (Template, AsyncTemplate)]


def test_all_is_sorted_and_complete():
    assert sandlot.__all__ == sorted(sandlot.__all__)
    assert set(sandlot.__all__) == EXPECTED
    for name in sandlot.__all__:
        assert getattr(sandlot, name) is not None


def test_every_exception_is_exported_and_rooted():
    classes = {n for n, c in vars(_exceptions).items() if isinstance(c, type) and issubclass(c, Exception)}
    assert classes <= set(sandlot.__all__)
    for name in classes:
        assert issubclass(getattr(sandlot, name), sandlot.SandlotError)


def described(fn) -> list[tuple[str, str, object, str]]:
    """(name, kind, default, type) of each parameter, then the return type, types evaluated and
    without module paths."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)

    def text(name):
        return re.sub(r"\b[\w.]+\.(?=\w)", "", str(hints.get(name, "")).replace("typing.", "")) \
            if name in hints else ""

    return [(p.name, str(p.kind), p.default, text(p.name)) for p in sig.parameters.values()] + \
        [("return", "", None, text("return"))]


def blocking(fn) -> list[tuple[str, str, object, str]]:
    """What the blocking form of an async method must look like: AsyncX -> X, AsyncIterator -> Iterator."""
    renamed = "|".join(sync.__name__ for sync, _ in PAIRS) + "|Iterator"
    return [(name, kind, default, re.sub(rf"\bAsync(?=({renamed})\b)", "", hint))
            for name, kind, default, hint in described(fn)]


def public(obj) -> set[str]:
    """Public attributes; for a class, its declared instance attributes too (the blocking class
    has them as properties)."""
    names = set(dir(obj))
    if isinstance(obj, type):
        names |= {n for c in obj.__mro__ for n in vars(c).get("__annotations__", {})}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("sync_cls, async_cls", PAIRS, ids=lambda c: c.__name__)
def test_sync_and_async_classes_expose_the_same_methods(sync_cls, async_cls):
    assert public(sync_cls) == public(async_cls)
    for name in public(async_cls):
        member = inspect.getattr_static(async_cls, name, None)  # None: a declared instance attribute
        if callable(member) or isinstance(member, (classmethod, staticmethod)):
            assert blocking(getattr(async_cls, name)) == described(getattr(sync_cls, name)), name
    assert hasattr(sync_cls, "__enter__") == hasattr(async_cls, "__aenter__")
    assert hasattr(sync_cls, "__iter__") == hasattr(async_cls, "__aiter__")


def test_sandbox_instances_expose_the_same_attributes():
    # no server is contacted: only objects are built
    impl = AsyncSandbox("sbx1", Transport(ConnectionConfig("http://127.0.0.1:9")), "token")
    sandbox = Sandbox._wrap(impl)
    assert public(sandbox) == public(impl)
    assert {"commands", "files", "pty", "packages", "sandbox_id"} <= public(sandbox)
    assert {"run_code", "create_code_context", "list_code_contexts", "restart_code_context",
            "remove_code_context"} <= public(sandbox)
    assert type(sandbox.commands) is Commands and type(sandbox.files) is Files and type(sandbox.pty) is Pty
    assert type(sandbox.packages) is Packages
    assert sandbox.sandbox_id == "sbx1"



def test_timeout_error_does_not_shadow_the_builtin_confusingly():
    import builtins

    assert sandlot.TimeoutError is sandlot.SandlotTimeoutError
    assert issubclass(sandlot.SandlotTimeoutError, builtins.TimeoutError)
    assert issubclass(sandlot.SandlotTimeoutError, sandlot.SandlotError)
    with pytest.raises(builtins.TimeoutError) as caught:  # code written against the builtin catches it
        raise sandlot.TimeoutError("late", execution=None)
    assert str(caught.value) == "late" and caught.value.message == "late" and caught.value.details == {"execution": None}
    assert type(caught.value).__name__ == "SandlotTimeoutError"  # tracebacks say whose timeout it was
