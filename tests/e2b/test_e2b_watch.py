"""Directory watches through the official SDK: the polling handle of `Sandbox.files.watch_dir`
(CreateWatcher/GetWatcherEvents) and the stream of `AsyncSandbox.files.watch_dir` (WatchDir)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest
from e2b import (
    AsyncSandbox,
    FileNotFoundException,
    FilesystemEventType,
    RateLimitException,
    SandboxException,
)
from e2b_support import run
from support import wait_until


def names(events, kind: FilesystemEventType | None = None) -> set[str]:
    return {e.name for e in events if kind is None or e.type == kind}


def test_sync_watch_reports_writes_right_after_they_return(sandbox, workdir):
    handle = sandbox.files.watch_dir(workdir)
    try:
        assert handle.get_new_events() == []
        sandbox.files.write(f"{workdir}/a.txt", "one")
        # events of an upload are recorded before the upload answers (docs/e2b.md §3.7): no sleeping here
        events = handle.get_new_events()
        assert "a.txt" in names(events, FilesystemEventType.CREATE) | names(events, FilesystemEventType.WRITE)
        assert all(not e.name.startswith("/") for e in events), "names are relative to the watched dir"
        # each poll returns only what is new
        assert handle.get_new_events() == []

        sandbox.files.write(f"{workdir}/a.txt", "two")
        assert "a.txt" in names(handle.get_new_events(), FilesystemEventType.WRITE)

        sandbox.files.rename(f"{workdir}/a.txt", f"{workdir}/b.txt")
        run(sandbox, f"chmod 600 {workdir}/b.txt")
        sandbox.files.remove(f"{workdir}/b.txt")
        deadline = time.monotonic() + 20  # ends when the event is seen; events can lag on a loaded host
        seen = []
        while time.monotonic() < deadline:
            seen += handle.get_new_events()
            if "b.txt" in names(seen, FilesystemEventType.REMOVE):
                break
            time.sleep(0.05)
        assert "a.txt" in names(seen, FilesystemEventType.RENAME)
        assert "b.txt" in names(seen, FilesystemEventType.CHMOD)
        assert "b.txt" in names(seen, FilesystemEventType.REMOVE)
    finally:
        handle.stop()
    with pytest.raises(SandboxException):
        handle.get_new_events()


def test_sync_watch_recursive_and_not(sandbox, workdir):
    sandbox.files.make_dir(f"{workdir}/sub")
    flat = sandbox.files.watch_dir(workdir)
    deep = sandbox.files.watch_dir(workdir, recursive=True)
    try:
        sandbox.files.write(f"{workdir}/sub/inner.txt", "x")
        sandbox.files.make_dir(f"{workdir}/sub/newdir")
        sandbox.files.write(f"{workdir}/sub/newdir/deeper.txt", "y")
        sandbox.files.write(f"{workdir}/top.txt", "z")
        time.sleep(0.3)
        deep_events = deep.get_new_events()
        flat_events = flat.get_new_events()
        assert {"sub/inner.txt", "sub/newdir", "sub/newdir/deeper.txt", "top.txt"} <= names(deep_events)
        assert "top.txt" in names(flat_events)
        assert not {n for n in names(flat_events) if n.startswith("sub/")}, flat_events
    finally:
        flat.stop()
        deep.stop()


def test_sync_watch_errors(sandbox, workdir):
    with pytest.raises(FileNotFoundException):
        sandbox.files.watch_dir(f"{workdir}/missing")
    sandbox.files.write(f"{workdir}/file.txt", "x")
    with pytest.raises(SandboxException):
        sandbox.files.watch_dir(f"{workdir}/file.txt")


def test_sync_watch_sees_changes_made_by_commands(sandbox, workdir):
    handle = sandbox.files.watch_dir(workdir)
    try:
        run(sandbox, f"echo hi > {workdir}/from-cmd.txt")
        deadline = time.monotonic() + 20  # ends when the event is seen; events can lag on a loaded host
        seen = []
        while "from-cmd.txt" not in names(seen) and time.monotonic() < deadline:
            seen += handle.get_new_events()
            time.sleep(0.05)
        assert "from-cmd.txt" in names(seen, FilesystemEventType.CREATE)
    finally:
        handle.stop()


WATCHERS_PER_SANDBOX = 64


def _inotify_instances(sandbox_id: str) -> int:
    """inotify fds held by the sandbox's processes, read from the host (the agent is not dumpable,
    so not even root inside may list its fds); its processes are found by their cgroup's name."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"/{sandbox_id}\n" not in Path(f"/proc/{pid}/cgroup").read_text():
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
    return count


def test_sync_watchers_per_sandbox_are_capped(make_sandbox):
    """Each polling watcher buffers up to 10,000 events on the server: a sandbox gets a bounded
    number, and past it a clear resource_exhausted (the SDK's RateLimitException)."""
    sbx = make_sandbox()
    handles = [sbx.files.watch_dir("/home/user") for _ in range(WATCHERS_PER_SANDBOX)]
    try:
        for _ in range(3):
            with pytest.raises(RateLimitException) as info:
                sbx.files.watch_dir("/tmp")
        assert str(WATCHERS_PER_SANDBOX) in str(info.value)
        # refused watches do not live on in the agent (one inotify instance per watch)
        wait_until(lambda: _inotify_instances(sbx.sandbox_id) == WATCHERS_PER_SANDBOX, 5,
                   message="the refused watches to end")
        handles.pop().stop()  # a removed watcher frees its place
        handles.append(sbx.files.watch_dir("/home/user"))
        sbx.files.write("/home/user/seen.txt", "x")
        assert "seen.txt" in names(handles[-1].get_new_events())
        assert "seen.txt" in names(handles[0].get_new_events())
    finally:
        for handle in handles:
            handle.stop()
    # another sandbox has its own allowance
    other = make_sandbox()
    other.files.watch_dir("/home/user").stop()


async def test_async_watch_dir_recursive(sandbox, workdir):
    sbx = await AsyncSandbox.connect(sandbox.sandbox_id)
    events = []
    exited = []
    handle = await sbx.files.watch_dir(workdir, on_event=events.append, on_exit=exited.append, recursive=True)

    async def wait_for(name: str, kind: FilesystemEventType, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while name not in names(events, kind):
            assert time.monotonic() < deadline, f"no {kind} event for {name}: {events}"
            await asyncio.sleep(0.05)

    try:
        await sbx.files.write(f"{workdir}/one.txt", "1")
        await wait_for("one.txt", FilesystemEventType.CREATE)
        await sbx.files.make_dir(f"{workdir}/x/y")
        await sbx.files.write(f"{workdir}/x/y/two.txt", "2")
        await wait_for("x/y/two.txt", FilesystemEventType.CREATE)
        await sbx.files.remove(f"{workdir}/one.txt")
        await wait_for("one.txt", FilesystemEventType.REMOVE)
        assert all(not e.name.startswith("/") for e in events)
    finally:
        await handle.stop()
    count = len(events)
    await sbx.files.write(f"{workdir}/after-stop.txt", "3")
    await asyncio.sleep(0.3)
    assert len(events) == count, "no events after stop()"


async def test_async_watch_missing_dir(sandbox, workdir):
    sbx = await AsyncSandbox.connect(sandbox.sandbox_id)
    with pytest.raises(FileNotFoundException):
        await sbx.files.watch_dir(f"{workdir}/missing", on_event=lambda e: None)
