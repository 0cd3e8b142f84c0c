"""filesystem.Filesystem through the official SDK: entries, errors, symlinks, metadata, watches."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from e2b import FileNotFoundException, FilesystemEventType, FileType, InvalidArgumentException, SandboxException


def test_get_info_and_exists(sandbox, workdir, user):
    sandbox.files.write(f"{workdir}/a.txt", "12345")
    info = sandbox.files.get_info(f"{workdir}/a.txt")
    assert (info.name, info.type, info.path, info.size) == ("a.txt", FileType.FILE, f"{workdir}/a.txt", 5)
    assert (info.mode, info.permissions) == (0o644, "-rw-r--r--")
    assert (info.owner, info.group) == (user.pw_name, user.pw_name)
    assert abs(info.modified_time.timestamp() - time.time()) < 60
    assert info.symlink_target is None
    directory = sandbox.files.get_info(workdir)
    assert (directory.type, directory.mode, directory.permissions[0]) == (FileType.DIR, 0o755, "d")
    assert sandbox.files.exists(f"{workdir}/a.txt") and not sandbox.files.exists(f"{workdir}/nope")
    with pytest.raises(FileNotFoundException):
        sandbox.files.get_info(f"{workdir}/nope")


def test_relative_paths_resolve_in_the_users_home(sandbox, home):
    name = f"rel-{os.getpid()}.txt"
    try:
        assert sandbox.files.write(name, "x").path == f"{home}/{name}"
        assert sandbox.files.get_info(name).path == f"{home}/{name}"
    finally:
        sandbox.files.remove(name)


def test_symlink_reports_its_target(sandbox, workdir):
    sandbox.files.write(f"{workdir}/target.txt", "t")
    sandbox.commands.run(f"ln -s {workdir}/target.txt {workdir}/link; ln -s {workdir} {workdir}/dirlink")
    link = sandbox.files.get_info(f"{workdir}/link")
    assert (link.type, link.symlink_target, link.path) == (FileType.FILE, f"{workdir}/target.txt", f"{workdir}/link")
    assert sandbox.files.get_info(f"{workdir}/dirlink").type == FileType.DIR


def test_make_dir(sandbox, workdir):
    assert sandbox.files.make_dir(f"{workdir}/x/y/z") is True
    assert sandbox.files.get_info(f"{workdir}/x/y/z").type == FileType.DIR
    assert sandbox.files.make_dir(f"{workdir}/x/y/z") is False
    sandbox.files.write(f"{workdir}/file", "")
    with pytest.raises(InvalidArgumentException):
        sandbox.files.make_dir(f"{workdir}/file")


def test_list_with_depth(sandbox, workdir):
    sandbox.files.write_files([{"path": f"{workdir}/top.txt", "data": "1"},
                               {"path": f"{workdir}/sub/mid.txt", "data": "2"},
                               {"path": f"{workdir}/sub/deeper/low.txt", "data": "3"}])
    assert sorted(e.name for e in sandbox.files.list(workdir)) == ["sub", "top.txt"]
    two = {e.path: e.type for e in sandbox.files.list(workdir, depth=2)}
    assert two == {f"{workdir}/top.txt": FileType.FILE, f"{workdir}/sub": FileType.DIR,
                   f"{workdir}/sub/mid.txt": FileType.FILE, f"{workdir}/sub/deeper": FileType.DIR}
    assert f"{workdir}/sub/deeper/low.txt" in {e.path for e in sandbox.files.list(workdir, depth=3)}
    with pytest.raises(FileNotFoundException):
        sandbox.files.list(f"{workdir}/missing")


def test_rename_and_remove(sandbox, workdir):
    sandbox.files.write(f"{workdir}/old.txt", "data", metadata={"Owner": "me"})
    moved = sandbox.files.rename(f"{workdir}/old.txt", f"{workdir}/new/place.txt")
    assert (moved.name, moved.path, moved.metadata) == ("place.txt", f"{workdir}/new/place.txt", {"owner": "me"})
    assert not sandbox.files.exists(f"{workdir}/old.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.rename(f"{workdir}/old.txt", f"{workdir}/other.txt")
    sandbox.files.remove(f"{workdir}/new")
    assert not sandbox.files.exists(f"{workdir}/new")
    sandbox.files.remove(f"{workdir}/never-existed")  # not an error


def test_metadata_round_trip(sandbox, workdir):
    path = f"{workdir}/meta.txt"
    written = sandbox.files.write(path, "m", metadata={"Project": "sandlot", "stage": "test"})
    assert written.metadata == {"project": "sandlot", "stage": "test"}
    assert sandbox.files.get_info(path).metadata == {"project": "sandlot", "stage": "test"}
    assert sandbox.files.list(workdir)[0].metadata == {"project": "sandlot", "stage": "test"}
    sandbox.files.write(path, "again")  # an upload without metadata clears it
    assert sandbox.files.get_info(path).metadata is None


def test_user_selection_sets_ownership(sandbox, tmp_path):
    path = f"{tmp_path}/owned-by-root"
    assert sandbox.files.write(path, "r", user="root").path == path
    assert sandbox.files.get_info(path, user="root").owner == "root"
    with pytest.raises(SandboxException, match="403"):
        sandbox.files.write("/root/not-mine", "x")  # the default user may not write there


def test_sync_watch(sandbox, workdir):
    handle = sandbox.files.watch_dir(workdir, recursive=True, include_entry=True)
    try:
        sandbox.files.write(f"{workdir}/w.txt", "hello")
        sandbox.files.make_dir(f"{workdir}/d")
        sandbox.files.write(f"{workdir}/d/deep.txt", "x")
        events = handle.get_new_events()
        seen = {(e.name, e.type) for e in events}
        assert {("w.txt", FilesystemEventType.CREATE), ("w.txt", FilesystemEventType.WRITE),
                ("d", FilesystemEventType.CREATE), ("d/deep.txt", FilesystemEventType.WRITE)} <= seen
        entry = next(e.entry for e in events if e.name == "w.txt" and e.type == FilesystemEventType.WRITE)
        assert entry is not None and entry.path == f"{workdir}/w.txt"
        sandbox.files.remove(f"{workdir}/w.txt")
        time.sleep(0.2)
        assert ("w.txt", FilesystemEventType.REMOVE) in {(e.name, e.type) for e in handle.get_new_events()}
    finally:
        handle.stop()
    with pytest.raises(SandboxException):
        handle.get_new_events()


def test_polling_watcher_outlives_pause_and_resume(envd, sandbox, workdir):
    handle = sandbox.files.watch_dir(workdir)
    try:
        paused = envd.kill("sbxmain")  # what a pause looks like to the front door
        envd.lookup.sandboxes["sbxmain"] = paused  # resumed, with a fresh closed event
        sandbox.files.write(f"{workdir}/after-resume.txt", "x")
        assert "after-resume.txt" in {e.name for e in handle.get_new_events()}
    finally:
        handle.stop()


def test_watch_errors(sandbox, workdir):
    with pytest.raises(FileNotFoundException):
        sandbox.files.watch_dir(f"{workdir}/missing")
    sandbox.files.write(f"{workdir}/plain", "")
    with pytest.raises(SandboxException):
        sandbox.files.watch_dir(f"{workdir}/plain")


async def test_async_watch(async_sandbox, workdir):
    events = []
    handle = await async_sandbox.files.watch_dir(workdir, on_event=events.append, timeout=30)
    try:
        await async_sandbox.files.write(f"{workdir}/async.txt", "a")
        deadline = time.monotonic() + 20  # ends when the event is seen; events can lag on a loaded host
        while not any(e.name == "async.txt" and e.type == FilesystemEventType.WRITE for e in events):
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.05)
    finally:
        await handle.stop()


async def test_async_files(async_sandbox, workdir):
    await async_sandbox.files.write(f"{workdir}/b.bin", b"\x00\xff")
    assert await async_sandbox.files.read(f"{workdir}/b.bin", format="bytes") == bytearray(b"\x00\xff")
    assert [e.name for e in await async_sandbox.files.list(workdir)] == ["b.bin"]
    assert await async_sandbox.files.exists(f"{workdir}/b.bin")


def test_names_that_are_not_utf8_are_listed_and_watched(sandbox, workdir):
    """A file name may hold any byte but '/' and NUL: one that is not UTF-8 (a sandbox's user made
    it) is listed, stat'ed and watched with U+FFFD in place of its bad bytes (protobuf strings are
    UTF-8; it failed the whole listing)."""
    watcher = sandbox.files.watch_dir(workdir)
    raw = os.fsencode(workdir) + b"/bad-\xff.txt"
    os.close(os.open(raw, os.O_CREAT | os.O_WRONLY, 0o644))
    os.symlink(raw, os.fsencode(workdir) + b"/link")
    listed = {e.name: e for e in sandbox.files.list(workdir)}
    assert set(listed) == {"bad-\ufffd.txt", "link"}
    assert listed["bad-\ufffd.txt"].path == f"{workdir}/bad-\ufffd.txt"
    assert sandbox.files.get_info(f"{workdir}/link").symlink_target == f"{workdir}/bad-\ufffd.txt"
    deadline = time.monotonic() + 5
    while not (events := watcher.get_new_events()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "bad-\ufffd.txt" in {e.name for e in events}
    watcher.stop()
