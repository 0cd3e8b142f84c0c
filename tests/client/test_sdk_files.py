"""`sandbox.files`, on both surfaces, in real sandboxes."""

from __future__ import annotations

import io
import os

import httpx
import pytest

from sandlot import FileNotFound, FilesystemEventType, FileType, PermissionDenied
from sdk_support import collect, eventually, maybe


async def test_write_and_read(sandbox):
    info = await maybe(sandbox.files.write("notes/today.txt", "héllo"))  # relative: the user's home
    assert (info.name, info.path) == ("today.txt", "/home/user/notes/today.txt")
    assert await maybe(sandbox.files.read("/home/user/notes/today.txt")) == "héllo"
    assert await maybe(sandbox.files.read("notes/today.txt", format="bytes")) == "héllo".encode()
    await maybe(sandbox.files.write("/tmp/raw.bin", bytes(range(256))))
    chunks = await collect(await maybe(sandbox.files.read("/tmp/raw.bin", format="stream")))
    assert b"".join(chunks) == bytes(range(256))


async def test_write_streams_file_objects_and_iterables(sandbox):
    payload = os.urandom(5 * 1024 * 1024 + 7)
    await maybe(sandbox.files.write("/tmp/big.bin", io.BytesIO(payload)))
    chunks = await collect(await maybe(sandbox.files.read("/tmp/big.bin", format="stream")))
    assert b"".join(chunks) == payload
    await maybe(sandbox.files.write("/tmp/parts.txt", (part for part in ["a", b"b", "c"])))
    assert await maybe(sandbox.files.read("/tmp/parts.txt")) == "abc"


async def test_write_files(sandbox):
    infos = await maybe(sandbox.files.write_files([{"path": "/tmp/w/a.txt", "data": "A"}, ("/tmp/w/b/c.txt", b"C")]))
    assert [i.path for i in infos] == ["/tmp/w/a.txt", "/tmp/w/b/c.txt"]
    assert await maybe(sandbox.files.read("/tmp/w/b/c.txt")) == "C"


async def test_list_stat_exists(sandbox):
    await maybe(sandbox.files.write("/tmp/tree/top.txt", "1234"))
    await maybe(sandbox.files.write("/tmp/tree/sub/deep.txt", "x"))
    names = sorted(e.name for e in await maybe(sandbox.files.list("/tmp/tree")))
    assert names == ["sub", "top.txt"]
    deep = sorted(e.path for e in await maybe(sandbox.files.list("/tmp/tree", depth=2)))
    assert "/tmp/tree/sub/deep.txt" in deep
    info = await maybe(sandbox.files.get_info("/tmp/tree/top.txt"))
    assert (info.type, info.size, info.mode, info.permissions, info.owner) == (
        FileType.FILE, 4, 0o644, "-rw-r--r--", "user")
    assert (await maybe(sandbox.files.get_info("/tmp/tree/sub"))).type == FileType.DIR
    assert await maybe(sandbox.files.exists("/tmp/tree/top.txt")) is True
    assert await maybe(sandbox.files.exists("/tmp/tree/missing")) is False
    with pytest.raises(FileNotFound):
        await maybe(sandbox.files.read("/tmp/tree/missing"))
    with pytest.raises(FileNotFound):
        await maybe(sandbox.files.list("/tmp/nowhere"))


async def test_make_dir_rename_copy_remove(sandbox):
    assert await maybe(sandbox.files.make_dir("/tmp/m/n/o")) is True
    assert await maybe(sandbox.files.make_dir("/tmp/m/n/o")) is False
    await maybe(sandbox.files.write("/tmp/m/a.txt", "a"))
    moved = await maybe(sandbox.files.rename("/tmp/m/a.txt", "/tmp/m/n/b.txt"))
    assert moved.path == "/tmp/m/n/b.txt"
    await maybe(sandbox.files.copy("/tmp/m/n", "/tmp/m2"))
    assert await maybe(sandbox.files.read("/tmp/m2/b.txt")) == "a"
    with pytest.raises(FileNotFound):
        await maybe(sandbox.files.copy("/tmp/none", "/tmp/x"))
    await maybe(sandbox.files.remove("/tmp/m"))
    await maybe(sandbox.files.remove("/tmp/m"))  # missing: not an error
    assert await maybe(sandbox.files.exists("/tmp/m")) is False


async def test_user_owns_what_it_writes(sandbox):
    await maybe(sandbox.files.write("/tmp/by-root", "r", user="root"))
    assert (await maybe(sandbox.files.get_info("/tmp/by-root"))).owner == "root"


async def test_permission_denied_from_the_real_server(sandbox):
    await maybe(sandbox.files.write("/tmp/root-only", "secret", user="root"))
    await maybe(sandbox.commands.run("chmod 600 /tmp/root-only", user="root"))
    with pytest.raises(PermissionDenied, match="/tmp/root-only"):  # upload (HTTP /files)
        await maybe(sandbox.files.write("/tmp/root-only", "overwritten"))
    with pytest.raises(PermissionDenied, match="/tmp/root-only"):  # download
        await maybe(sandbox.files.read("/tmp/root-only"))
    with pytest.raises(PermissionDenied):  # RPCs
        await maybe(sandbox.files.make_dir("/root/mine"))
    with pytest.raises(PermissionDenied):
        await maybe(sandbox.files.remove("/etc/hostname"))
    assert await maybe(sandbox.files.read("/tmp/root-only", user="root")) == "secret"  # untouched


async def test_watch_dir(sandbox):
    await maybe(sandbox.files.make_dir("/tmp/watched/sub"))
    handle = await maybe(sandbox.files.watch_dir("/tmp/watched", recursive=True))
    await maybe(sandbox.files.write("/tmp/watched/sub/new.txt", "x"))
    events = await maybe(handle.get_new_events())  # a finished write's events are already there
    assert ("sub/new.txt", FilesystemEventType.WRITE) in [(e.name, e.type) for e in events]
    await maybe(handle.stop())

    seen = []
    handle = await maybe(sandbox.files.watch_dir("/tmp/watched", on_event=seen.append))
    await maybe(sandbox.files.write("/tmp/watched/cb.txt", "y"))
    assert await eventually(lambda: any(e.name == "cb.txt" for e in seen))
    await maybe(handle.stop())
    with pytest.raises(FileNotFound):
        await maybe(sandbox.files.watch_dir("/tmp/not-there"))


async def test_signed_urls(sandbox):
    await maybe(sandbox.files.write("/tmp/shared.txt", "public"))
    async with httpx.AsyncClient() as http:  # no headers, no key: the signature is the credential
        assert (await http.get(sandbox.download_url("/tmp/shared.txt", expires_in=60))).text == "public"
        upload = await http.post(sandbox.upload_url("/tmp/up.txt"), files={"file": ("up.txt", b"sent")})
        assert upload.status_code == 200
        assert (await http.get(sandbox.download_url("/tmp/shared.txt", expires_in=-10))).status_code == 401
    assert await maybe(sandbox.files.read("/tmp/up.txt")) == "sent"
