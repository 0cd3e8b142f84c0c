"""files.*: entries, listing with depth, mkdir -p, move, remove, streamed read and write, symlinks,
metadata xattrs, ownership and permissions of the requesting user."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from sandlot import SandlotError


async def read_all(client, path, user=None):
    chunks = [c async for c in client.read(path, user)]
    return chunks[0]["entry"], b"".join(chunks[1:])


async def read_with_length(client, path):
    chunks = [c async for c in client.read(path)]
    return chunks[0]["length"], b"".join(chunks[1:])


async def test_write_then_read_and_entry(client, home, user):
    entry = await client.write("notes/a.txt", None, b"hello")
    assert entry == {
        "name": "a.txt", "type": "file", "path": str(home / "notes" / "a.txt"), "size": 5, "mode": 0o644,
        "permissions": "-rw-r--r--", "owner": user.pw_name, "group": user.pw_name,
        "mtime": entry["mtime"], "symlink_target": None, "metadata": {}}
    st = os.stat(home / "notes")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o755)  # parents are the user's too
    got_entry, data = await read_all(client, str(home / "notes" / "a.txt"))
    assert data == b"hello" and got_entry["size"] == 5


async def test_large_file_streams_both_ways(client, home):
    blob = os.urandom(1 << 20) * 20

    async def chunks():
        for i in range(0, len(blob), 3_000_000):  # uneven chunks: the client reframes them
            yield blob[i:i + 3_000_000]

    entry = await client.write("big.bin", None, chunks())
    assert entry["size"] == len(blob)
    received, count = [], 0
    async for chunk in client.read("big.bin"):
        if isinstance(chunk, bytes):
            received.append(chunk)
            count += 1
    assert b"".join(received) == blob and count > 1


async def test_a_slow_reader_gets_every_byte_in_order(client, home):
    # the agent sends each chunk after its header without joining them; a reader slower than the
    # agent fills the socket, so chunks go out in parts and the rest is queued: nothing may be lost,
    # repeated or reordered (the blob repeats no pattern)
    blob = os.urandom(3 << 20)
    await client.write("slow.bin", None, blob)
    received = []
    async for chunk in client.read("slow.bin"):
        if isinstance(chunk, bytes):
            received.append(chunk)
            await asyncio.sleep(0.01)
    assert b"".join(received) == blob


async def test_a_read_promises_its_length_only_where_storage_backs_the_size(client, home):
    blob = os.urandom(300_000)
    await client.write("sized.bin", None, blob)
    assert await read_with_length(client, str(home / "sized.bin")) == (len(blob), blob)
    # procfs reports 0 bytes and sysfs a page, whatever they hold: read to the end, no promise
    length, data = await read_with_length(client, "/proc/self/status")
    assert length is None and b"Name:" in data
    sysfs = "/sys/kernel/mm/transparent_hugepage/enabled"
    if os.path.exists(sysfs):
        length, data = await read_with_length(client, sysfs)
        assert os.stat(sysfs).st_size == 4096 and length is None and 0 < len(data) < 4096
    # a sparse file's holes hold no blocks: read to the end too
    with open(home / "sparse.bin", "wb") as f:
        f.truncate(1 << 20)
    assert await read_with_length(client, str(home / "sparse.bin")) == (None, bytes(1 << 20))
    await client.write("empty", None, b"")
    assert await read_with_length(client, str(home / "empty")) == (None, b"")


async def test_a_file_cut_short_while_read_is_an_error_and_one_that_grows_is_sent_as_opened(client, home):
    # the agent reads ahead only as far as the socket takes: 20 MiB cannot all be sent before the
    # reader takes its second chunk
    blob = os.urandom(20 << 20)
    path = home / "changing.bin"
    path.write_bytes(blob)
    stream = client.read(str(path))
    assert (await anext(stream))["length"] == len(blob)
    first = await anext(stream)
    os.truncate(path, len(first))
    with pytest.raises(SandlotError) as e:
        async for _ in stream:
            pass
    assert e.value.code == "failed_precondition" and "shorter" in e.value.message
    # what a file grows by after its open is not sent: the promised length holds
    path.write_bytes(blob)
    stream = client.read(str(path))
    assert (await anext(stream))["length"] == len(blob)
    received = [await anext(stream)]
    with open(path, "ab") as f:
        f.write(b"more" * 1000)
    received += [chunk async for chunk in stream]
    assert b"".join(received) == blob


async def test_append_and_overwrite(client, home):
    await client.write("log.txt", None, b"one\n")
    await client.write("log.txt", None, b"two\n", append=True)
    assert (home / "log.txt").read_bytes() == b"one\ntwo\n"
    await client.write("log.txt", None, b"")
    assert (home / "log.txt").read_bytes() == b""


async def test_files_as_root_and_permissions_of_user(client, home, user):
    entry = await client.write("/tmp/root-owned-" + user.pw_name, "root", b"secret")
    assert entry["owner"] == "root"
    os.chmod(entry["path"], 0o600)
    try:
        for op in (read_all(client, entry["path"]), client.write(entry["path"], None, b"x"),
                   client.remove(entry["path"]), client.make_dir("/root/nope")):
            with pytest.raises(SandlotError) as e:
                await op
            assert e.value.code == "permission_denied"
        assert (await read_all(client, entry["path"], "root"))[1] == b"secret"
    finally:
        os.unlink(entry["path"])


async def test_stat_missing_and_directory_errors(client, home):
    for op in (client.stat("missing"), read_all(client, "missing"), client.list_dir("missing"),
               client.move("missing", "elsewhere")):
        with pytest.raises(SandlotError) as e:
            await op
        assert e.value.code == "not_found" and str(home / "missing") in e.value.message
    with pytest.raises(SandlotError) as e:
        await read_all(client, str(home))
    assert e.value.code == "invalid_argument"
    with pytest.raises(SandlotError) as e:
        await client.write(str(home), None, b"x")
    assert e.value.code == "invalid_argument"


async def test_mkdir(client, home, user):
    entry = await client.make_dir("deep/er/dir")
    assert entry["type"] == "dir" and entry["mode"] == 0o755 and entry["permissions"] == "drwxr-xr-x"
    assert entry["owner"] == user.pw_name
    with pytest.raises(SandlotError) as e:
        await client.make_dir("deep/er/dir")
    assert e.value.code == "already_exists"
    await client.write("plain", None, b"")
    with pytest.raises(SandlotError) as e:
        await client.make_dir("plain")
    assert e.value.code == "invalid_argument"


async def test_list_with_depth(client, home):
    await client.write("tree/a/b/c.txt", None, b"c")
    await client.write("tree/top.txt", None, b"t")

    def names(entries):
        return [e["path"][len(str(home / "tree")) + 1:] for e in entries]

    assert names(await client.list_dir("tree")) == ["a", "top.txt"]
    assert names(await client.list_dir("tree", depth=0)) == ["a", "top.txt"]
    assert names(await client.list_dir("tree", depth=3)) == ["a", "a/b", "a/b/c.txt", "top.txt"]
    with pytest.raises(SandlotError) as e:
        await client.list_dir("tree/top.txt")
    assert e.value.code == "invalid_argument"


async def test_move_and_remove(client, home):
    await client.write("m/src.txt", None, b"data")
    entry = await client.move("m/src.txt", "m/new/dst.txt")
    assert entry["path"] == str(home / "m" / "new" / "dst.txt") and entry["size"] == 4
    assert not (home / "m" / "src.txt").exists()
    await client.remove("m")
    assert not (home / "m").exists()
    await client.remove("m")  # a missing path is not an error


async def test_move_across_filesystems(client, home):
    shm = "/dev/shm/sandlot-agent-test-move"
    await client.write(shm, "root", b"across")
    try:
        entry = await client.move(shm, str(home / "across.txt"), "root")
        assert (home / "across.txt").read_bytes() == b"across" and entry["size"] == 6
    finally:
        if os.path.exists(shm):
            os.unlink(shm)


async def test_symlinks_are_followed_by_stat(client, home):
    await client.write("target.txt", None, b"12345")
    os.symlink("target.txt", home / "link")
    os.symlink(home, home / "dirlink")
    os.symlink("nowhere", home / "dangling")
    entry = await client.stat("link")
    assert entry["type"] == "file" and entry["size"] == 5
    assert entry["symlink_target"] == str(home / "target.txt") and entry["path"] == str(home / "link")
    assert (await client.stat("dirlink"))["type"] == "dir"
    dangling = await client.stat("dangling")
    assert dangling["type"] == "symlink" and dangling["symlink_target"] == str(home / "nowhere")
    listed = {e["name"]: e for e in await client.list_dir(str(home))}
    assert listed["link"]["type"] == "file" and listed["link"]["symlink_target"] == str(home / "target.txt")


async def test_metadata_is_stored_as_xattrs_and_replaced(client, home):
    entry = await client.write("meta.txt", None, b"x", metadata={"Owner": "me", "kind": "note"})
    assert entry["metadata"] == {"owner": "me", "kind": "note"}
    assert os.getxattr(home / "meta.txt", "user.e2b.owner") == b"me"
    os.setxattr(home / "meta.txt", "user.e2b.extra", b"set elsewhere")
    os.setxattr(home / "meta.txt", "user.other", b"not ours")
    assert (await client.stat("meta.txt"))["metadata"] == {"owner": "me", "kind": "note", "extra": "set elsewhere"}
    moved = await client.move("meta.txt", "meta2.txt")
    assert moved["metadata"]["owner"] == "me"
    assert (await client.write("meta2.txt", None, b"y"))["metadata"] == {}  # no metadata clears it
    assert os.getxattr(home / "meta2.txt", "user.other") == b"not ours"


async def test_bad_requests(client):
    for request, code in (({"op": "files.stat"}, "invalid_argument"),
                          ({"op": "files.stat", "path": 5}, "invalid_argument"),
                          ({"op": "files.stat", "path": "/", "user": "no-such-user"}, "unauthenticated"),
                          ({"op": "files.list", "path": "/", "depth": "deep"}, "invalid_argument"),
                          ({"op": "files.write", "path": "x", "metadata": {"k": 1}}, "invalid_argument")):
        with pytest.raises(SandlotError) as e:
            await client.call(**request)
        assert e.value.code == code, request



async def test_listing_is_bounded(make_agent, home):
    client = make_agent(max_list_entries=20).client
    root = home / "wide"
    (root / "sub").mkdir(parents=True)
    for i in range(15):
        (root / f"f{i}").write_text("")
        (root / "sub" / f"g{i}").write_text("")
    assert len(await client.list_dir(str(root), depth=1)) == 16
    with pytest.raises(SandlotError) as e:
        await client.list_dir(str(root), depth=2)
    assert e.value.code == "resource_exhausted" and "smaller depth" in e.value.message


async def test_writes_to_a_fifo_or_device_are_refused_without_blocking(client, home):
    # A FIFO planted where a file goes: opening it for writing would block until a reader comes,
    # and the agent serves every request from one loop.
    fifo = home / "pipe"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)  # planted by root, writable by anyone
    os.symlink(fifo, home / "link-to-pipe")
    for path, append in ((str(fifo), False), (str(fifo), True), (str(home / "link-to-pipe"), False),
                         ("/dev/null", False)):
        with pytest.raises(SandlotError) as e:
            await client.write(path, None, b"data", append=append)
        assert e.value.code == "invalid_argument" and "not a regular file" in e.value.message, e.value
    # with a reader present the open would succeed: the type is checked on the open descriptor
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(SandlotError) as e:
            await client.write(str(fifo), None, b"data")
        assert "not a regular file" in e.value.message
        assert os.read(reader, 100) == b""  # nothing went into the pipe
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left as it was
    assert not [p for p in os.listdir(home) if p.startswith(".sandlot-upload-")]  # no staging file left
    assert (await client.stat(str(home)))["type"] == "dir"  # and the agent still answers
