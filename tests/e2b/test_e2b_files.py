"""The filesystem through the official SDK: /files uploads and downloads, and the Filesystem RPCs
(docs/e2b.md §3.6–§3.9)."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from e2b import FileNotFoundException, FileType, SandboxException
from e2b.sandbox_sync.filesystem.filesystem import Filesystem
from e2b_support import SDK_VERSION, assert_json_error, envd_headers, run
from support import access_token, unique
from packaging.version import Version


def supports(method, parameter: str) -> bool:
    return parameter in inspect.signature(method).parameters


def test_text_round_trip(sandbox, workdir):
    text = "héllo wörld ✓\nline two\n\ttabbed\r\nend"
    info = sandbox.files.write(f"{workdir}/a.txt", text)
    assert info.path == f"{workdir}/a.txt" and info.name == "a.txt"
    assert info.type in (FileType.FILE, None)
    assert sandbox.files.read(f"{workdir}/a.txt") == text
    # the sandbox sees the same bytes
    assert run(sandbox, f"sha256sum {workdir}/a.txt")[1].split()[0] == hashlib.sha256(text.encode()).hexdigest()
    # overwriting replaces the content (shorter content truncates)
    sandbox.files.write(f"{workdir}/a.txt", "short")
    assert sandbox.files.read(f"{workdir}/a.txt") == "short"
    # empty file
    sandbox.files.write(f"{workdir}/empty", "")
    assert sandbox.files.read(f"{workdir}/empty") == ""
    assert sandbox.files.get_info(f"{workdir}/empty").size == 0


def test_relative_paths_resolve_against_home(sandbox):
    name = unique("rel") + ".txt"
    info = sandbox.files.write(name, "relative")
    assert info.path == f"/home/user/{name}"
    assert sandbox.files.read(f"/home/user/{name}") == "relative"
    assert sandbox.files.read(name) == "relative"
    assert sandbox.files.get_info(name).path == f"/home/user/{name}"
    sandbox.files.remove(name)


@pytest.mark.parametrize("name", ["a?b#c%20d+e&f=g.txt", "spaced dir/ünï cödé.txt", "%2e%2e%2fnot-up.txt",
                                  "semi;colon 'quote\" $HOME.txt"])
def test_names_with_url_and_shell_metacharacters(sandbox, workdir, name):
    path = f"{workdir}/{name}"
    info = sandbox.files.write(path, f"content of {name}")
    assert info.path == path
    assert sandbox.files.read(path) == f"content of {name}"
    # exactly that name exists, decoded once: the sandbox's own view agrees
    listing = run(sandbox, f"cd {workdir} && find . -type f")[1].splitlines()
    assert f"./{name}" in listing
    assert sandbox.files.get_info(path).name == name.rsplit("/", 1)[-1]
    sandbox.files.remove(path)


def test_bytes_round_trip_non_utf8(sandbox, workdir):
    data = os.urandom(64 * 1024) + b"\xff\xfe\x00\x80" + bytes(range(256))
    sandbox.files.write(f"{workdir}/blob.bin", data)
    got = sandbox.files.read(f"{workdir}/blob.bin", format="bytes")
    assert bytes(got) == data
    assert sandbox.files.get_info(f"{workdir}/blob.bin").size == len(data)
    # reading non-UTF-8 as text does not fail: bad bytes are replaced
    text = sandbox.files.read(f"{workdir}/blob.bin")
    assert isinstance(text, str) and "\ufffd" in text


def test_stream_read_and_file_like_write(sandbox, workdir):
    data = os.urandom(3 * 1024 * 1024 + 17)
    # a binary file object is streamed (octet-stream upload)
    sandbox.files.write(f"{workdir}/from-fileobj.bin", io.BytesIO(data))
    # a text file object too
    sandbox.files.write(f"{workdir}/from-textio.txt", io.StringIO("text io ✓\n"))
    assert sandbox.files.read(f"{workdir}/from-textio.txt") == "text io ✓\n"

    stream = sandbox.files.read(f"{workdir}/from-fileobj.bin", format="stream")
    chunks = [bytes(c) for c in stream]
    assert b"".join(chunks) == data
    assert len(chunks) >= 1

    # octet-stream explicitly, and the multipart path explicitly
    sandbox.files.write(f"{workdir}/octet.bin", data[:1000], use_octet_stream=True)
    sandbox.files.write(f"{workdir}/multi.bin", io.BytesIO(data[:1000]), use_octet_stream=False)
    assert bytes(sandbox.files.read(f"{workdir}/octet.bin", format="bytes")) == data[:1000]
    assert bytes(sandbox.files.read(f"{workdir}/multi.bin", format="bytes")) == data[:1000]

    if SDK_VERSION >= Version("2.46"):
        # iterables of bytes are streamed too (2.63.0; 2.45.1 accepts only str/bytes/IO)
        sandbox.files.write(f"{workdir}/iter.bin", iter([b"ab", b"", b"cd" * 1000]))
        assert bytes(sandbox.files.read(f"{workdir}/iter.bin", format="bytes")) == b"ab" + b"cd" * 1000


def test_write_multiple_files(sandbox, workdir):
    entries = [
        {"path": f"{workdir}/multi/one.txt", "data": "one"},
        {"path": f"{workdir}/multi/nested/deep/two.bin", "data": b"\x00\x01two"},
        {"path": f"{workdir}/multi/three ✓.txt", "data": io.BytesIO(b"three")},
        {"path": f"{workdir}/multi/four.txt", "data": "four"},
    ]
    infos = sandbox.files.write_files(entries)
    assert [i.path for i in infos] == [e["path"] for e in entries]
    assert [i.name for i in infos] == ["one.txt", "two.bin", "three ✓.txt", "four.txt"]
    assert sandbox.files.read(f"{workdir}/multi/one.txt") == "one"
    assert bytes(sandbox.files.read(f"{workdir}/multi/nested/deep/two.bin", format="bytes")) == b"\x00\x01two"
    assert sandbox.files.read(f"{workdir}/multi/three ✓.txt") == "three"
    assert sandbox.files.read(f"{workdir}/multi/four.txt") == "four"
    # multipart with several str/bytes entries (filename = destination path)
    infos = sandbox.files.write_files([{"path": f"{workdir}/m1", "data": "1"}, {"path": f"{workdir}/m2", "data": b"2"}],
                                      use_octet_stream=False)
    assert [i.path for i in infos] == [f"{workdir}/m1", f"{workdir}/m2"]
    assert sandbox.files.read(f"{workdir}/m2") == "2"


@pytest.mark.skipif(not supports(Filesystem.write, "gzip"), reason="this SDK release has no gzip uploads")
def test_gzip_upload_and_download(sandbox, workdir):
    data = (b"compressible " * 50_000) + os.urandom(1000)
    info = sandbox.files.write(f"{workdir}/gz.bin", data, gzip=True)
    assert info.path == f"{workdir}/gz.bin"
    assert bytes(sandbox.files.read(f"{workdir}/gz.bin", format="bytes")) == data
    assert bytes(sandbox.files.read(f"{workdir}/gz.bin", format="bytes", gzip=True)) == data
    # stored uncompressed: the sandbox sees the original bytes
    assert run(sandbox, f"sha256sum {workdir}/gz.bin")[1].split()[0] == hashlib.sha256(data).hexdigest()
    infos = sandbox.files.write_files([{"path": f"{workdir}/gz1", "data": "a" * 10_000},
                                       {"path": f"{workdir}/gz2", "data": b"b" * 10_000}], gzip=True)
    assert [i.path for i in infos] == [f"{workdir}/gz1", f"{workdir}/gz2"]
    assert sandbox.files.read(f"{workdir}/gz2") == "b" * 10_000
    if supports(Filesystem.read, "gzip"):  # a large compressible file, streamed both ways
        big = os.urandom(4 * 1024 * 1024).hex().encode()
        sandbox.files.write(f"{workdir}/gz-big.txt", io.BytesIO(big), gzip=True)
        streamed = hashlib.sha256()
        for chunk in sandbox.files.read(f"{workdir}/gz-big.txt", format="stream", gzip=True):
            streamed.update(chunk)
        assert streamed.hexdigest() == hashlib.sha256(big).hexdigest()


def _files_client(server, sandbox) -> httpx.Client:
    """Raw HTTP to the sandbox's /files, as the SDK routes it (docs/e2b.md §1.3), to see what is on the wire."""
    return httpx.Client(base_url=server.url, timeout=120,
                        headers=envd_headers(sandbox.sandbox_id, access_token(server, sandbox.sandbox_id)))


def test_gzip_download_on_the_wire(sdk_env, sandbox, workdir):
    """Downloads are gzip-encoded when the client accepts gzip (the SDK always sends
    `Accept-Encoding: gzip, deflate`; `gzip=True` sends just `gzip`), streamed as chunks."""
    text = os.urandom(8 * 1024 * 1024).hex().encode()  # 16 MiB of hex: compresses to about half
    sandbox.files.write(f"{workdir}/big.txt", io.BytesIO(text))
    with _files_client(sdk_env, sandbox) as http:
        for accept in ("gzip", "gzip, deflate", "deflate, gzip;q=0.5"):
            with http.stream("GET", "/files", params={"path": f"{workdir}/big.txt"},
                             headers={"Accept-Encoding": accept}) as r:
                assert r.status_code == 200, r.read()
                assert r.headers["content-encoding"] == "gzip", (accept, r.headers)
                assert "content-length" not in r.headers  # streamed: the size is not known up front
                raw = list(r.iter_raw())
            wire = b"".join(raw)
            assert len(raw) > 1 and len(wire) < 0.7 * len(text), (len(raw), len(wire))
            assert gzip.decompress(wire) == text
        # not accepted: the bytes as they are
        for accept in ("identity", "gzip;q=0", "br"):
            with http.stream("GET", "/files", params={"path": f"{workdir}/big.txt"},
                             headers={"Accept-Encoding": accept}) as r:
                assert r.status_code == 200 and "content-encoding" not in r.headers, (accept, r.headers)
                assert b"".join(r.iter_raw()) == text
        # data that does not shrink is sent as is even to a gzip client (Accept-Encoding is advisory)
        noise = os.urandom(256 * 1024)
        sandbox.files.write(f"{workdir}/noise.bin", noise)
        r = http.get("/files", params={"path": f"{workdir}/noise.bin"}, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and "content-encoding" not in r.headers and r.content == noise
        # a small text file, and an empty one
        sandbox.files.write(f"{workdir}/small.txt", "hello " * 100)
        with http.stream("GET", "/files", params={"path": f"{workdir}/small.txt"},
                         headers={"Accept-Encoding": "gzip"}) as r:
            assert r.headers["content-encoding"] == "gzip"
            assert gzip.decompress(b"".join(r.iter_raw())) == b"hello " * 100
        sandbox.files.write(f"{workdir}/empty", "")
        r = http.get("/files", params={"path": f"{workdir}/empty"}, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.content == b""
    # the SDK decodes what it asked for
    assert sandbox.files.read(f"{workdir}/small.txt") == "hello " * 100
    assert bytes(sandbox.files.read(f"{workdir}/big.txt", format="bytes")) == text


def test_a_download_tells_its_length_when_the_files_storage_backs_it(sdk_env, sandbox, workdir):
    """A file sent as it is has a Content-Length (as real envd's downloads do), so that clients can
    size their buffers and see a cut-off body; a file whose size says nothing of its content
    (procfs, a sparse file) is sent chunked."""
    noise = os.urandom(3 * 1024 * 1024 + 5)
    sandbox.files.write(f"{workdir}/noise.bin", noise)
    run(sandbox, f"truncate -s 1M {workdir}/sparse.bin")
    with _files_client(sdk_env, sandbox) as http:
        for accept in ("gzip", "identity"):
            with http.stream("GET", "/files", params={"path": f"{workdir}/noise.bin"},
                             headers={"Accept-Encoding": accept}) as r:
                assert r.status_code == 200 and "content-encoding" not in r.headers, r.headers
                assert r.headers["content-length"] == str(len(noise)) and "transfer-encoding" not in r.headers
                assert b"".join(r.iter_raw()) == noise
        for path, check in (("/proc/self/status", lambda body: b"Name:" in body),
                            (f"{workdir}/sparse.bin", lambda body: body == bytes(1 << 20))):
            r = http.get("/files", params={"path": path}, headers={"Accept-Encoding": "identity"})
            assert r.status_code == 200 and "content-length" not in r.headers, (path, r.headers)
            assert r.headers["transfer-encoding"] == "chunked" and check(r.content), path
    assert bytes(sandbox.files.read(f"{workdir}/noise.bin", format="bytes")) == noise


def test_a_file_cut_short_during_its_download_gives_a_cut_off_body(sdk_env, sandbox, workdir):
    """The promised length cannot be kept: the body ends short of it and the connection closes,
    so the client sees an incomplete download, never a complete-looking one."""
    sandbox.files.write(f"{workdir}/big.bin", os.urandom(40 * 1024 * 1024))  # more than the sockets hold
    with _files_client(sdk_env, sandbox) as http:
        with http.stream("GET", "/files", params={"path": f"{workdir}/big.bin"},
                         headers={"Accept-Encoding": "identity"}) as r:
            assert r.headers["content-length"] == str(40 * 1024 * 1024)
            chunks = r.iter_raw()
            next(chunks)
            run(sandbox, f"truncate -s 1000 {workdir}/big.bin")
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
                for _ in chunks:
                    pass
        r = http.get("/files", params={"path": f"{workdir}/big.bin"})  # the server serves on
        assert r.status_code == 200 and len(r.content) == 1000


def test_single_byte_range_download(sdk_env, sandbox, workdir):
    data = bytes(range(256)) * 4096  # 1 MiB
    sandbox.files.write(f"{workdir}/r.bin", data)
    with _files_client(sdk_env, sandbox) as http:
        def get(rng: str) -> httpx.Response:
            return http.get("/files", params={"path": f"{workdir}/r.bin"},
                            headers={"Range": rng, "Accept-Encoding": "gzip"})

        for rng, (first, last) in {"bytes=10-19": (10, 19), "bytes=1048000-": (1048000, len(data) - 1),
                                   "bytes=-5": (len(data) - 5, len(data) - 1),
                                   "bytes=300000-99999999": (300000, len(data) - 1),
                                   "bytes=0-0": (0, 0)}.items():
            r = get(rng)
            assert r.status_code == 206, (rng, r.status_code, r.text[:200])
            assert "content-encoding" not in r.headers  # a range is of the bytes themselves
            assert r.headers["content-range"] == f"bytes {first}-{last}/{len(data)}", rng
            assert r.content == data[first:last + 1], rng
        body = assert_json_error(get(f"bytes={len(data)}-"), 416)
        assert str(len(data)) in body["message"]
        assert get(f"bytes={len(data)}-").headers["content-range"] == f"bytes */{len(data)}"
        # what is not one simple range is ignored: the whole file
        for rng in ("bytes=0-1,5-6", "bytes=9-3", "items=0-5", "bytes=x-y"):
            r = get(rng)
            assert r.status_code == 200 and r.content == data, rng


@pytest.mark.skipif(not supports(Filesystem.write, "metadata"), reason="this SDK release has no file metadata")
def test_file_metadata(sandbox, workdir):
    path = f"{workdir}/meta.txt"
    info = sandbox.files.write(path, "with metadata", metadata={"Owner": "alice", "purpose": "test run"})
    assert info.metadata == {"owner": "alice", "purpose": "test run"}  # keys are lower-cased
    assert sandbox.files.get_info(path).metadata == {"owner": "alice", "purpose": "test run"}
    [listed] = [e for e in sandbox.files.list(workdir) if e.name == "meta.txt"]
    assert listed.metadata == {"owner": "alice", "purpose": "test run"}
    # rename keeps it
    moved = sandbox.files.rename(path, f"{workdir}/meta2.txt")
    assert moved.metadata == {"owner": "alice", "purpose": "test run"}
    # an upload replaces the metadata; one without metadata clears it
    sandbox.files.write(f"{workdir}/meta2.txt", "v2", metadata={"owner": "bob"})
    assert sandbox.files.get_info(f"{workdir}/meta2.txt").metadata == {"owner": "bob"}
    sandbox.files.write(f"{workdir}/meta2.txt", "v3")
    assert not sandbox.files.get_info(f"{workdir}/meta2.txt").metadata
    # files without metadata report none
    sandbox.files.write(f"{workdir}/plain.txt", "x")
    assert not sandbox.files.get_info(f"{workdir}/plain.txt").metadata
    # metadata on several files at once
    infos = sandbox.files.write_files([{"path": f"{workdir}/w1", "data": "1"}, {"path": f"{workdir}/w2", "data": "2"}],
                                      metadata={"batch": "7"})
    assert all(i.metadata == {"batch": "7"} for i in infos)
    assert sandbox.files.get_info(f"{workdir}/w2").metadata == {"batch": "7"}


def test_list_depth(sandbox, workdir):
    sandbox.files.write_files([
        {"path": f"{workdir}/tree/a.txt", "data": "a"},
        {"path": f"{workdir}/tree/sub/b.txt", "data": "bb"},
        {"path": f"{workdir}/tree/sub/deeper/c.txt", "data": "ccc"},
    ])
    depth1 = sandbox.files.list(f"{workdir}/tree")
    assert {e.name for e in depth1} == {"a.txt", "sub"}
    by_name = {e.name: e for e in depth1}
    assert by_name["a.txt"].type == FileType.FILE and by_name["a.txt"].size == 1
    assert by_name["sub"].type == FileType.DIR
    assert by_name["a.txt"].path == f"{workdir}/tree/a.txt"
    assert {e.path for e in sandbox.files.list(f"{workdir}/tree", depth=1)} == {e.path for e in depth1}

    depth2 = sandbox.files.list(f"{workdir}/tree", depth=2)
    assert {e.path for e in depth2} == {f"{workdir}/tree/{p}" for p in ("a.txt", "sub", "sub/b.txt", "sub/deeper")}
    depth3 = sandbox.files.list(f"{workdir}/tree", depth=3)
    assert f"{workdir}/tree/sub/deeper/c.txt" in {e.path for e in depth3}

    # relative to home, and errors
    assert {e.name for e in sandbox.files.list(workdir.removeprefix("/home/user/") + "/tree")} == {"a.txt", "sub"}
    with pytest.raises(FileNotFoundException):
        sandbox.files.list(f"{workdir}/no-such-dir")
    with pytest.raises(SandboxException):
        sandbox.files.list(f"{workdir}/tree", depth=0)  # the SDK refuses depth < 1


def test_exists(sandbox, workdir):
    sandbox.files.write(f"{workdir}/e.txt", "x")
    assert sandbox.files.exists(f"{workdir}/e.txt") is True
    assert sandbox.files.exists(workdir) is True
    assert sandbox.files.exists(f"{workdir}/nope") is False
    assert sandbox.files.exists("/") is True


def test_get_info(sandbox, workdir):
    sandbox.files.write(f"{workdir}/i.txt", "12345")
    info = sandbox.files.get_info(f"{workdir}/i.txt")
    assert info.name == "i.txt" and info.path == f"{workdir}/i.txt"
    assert info.type == FileType.FILE
    assert info.size == 5
    assert info.mode == 0o644 and info.permissions == "-rw-r--r--"
    assert info.owner == "user" and info.group == "user"
    assert abs(info.modified_time - datetime.now(UTC)) < timedelta(seconds=60)
    assert info.symlink_target is None

    d = sandbox.files.get_info(workdir)
    assert d.type == FileType.DIR and d.permissions.startswith("d") and d.mode == 0o755

    run(sandbox, f"chmod 750 {workdir}/i.txt")
    info = sandbox.files.get_info(f"{workdir}/i.txt")
    assert info.mode == 0o750 and info.permissions == "-rwxr-x---"

    root_file = sandbox.files.get_info("/etc/passwd")
    assert root_file.owner == "root" and root_file.group == "root"

    with pytest.raises(FileNotFoundException):
        sandbox.files.get_info(f"{workdir}/missing")


def test_get_info_of_symlinks(sandbox, workdir):
    sandbox.files.write(f"{workdir}/target.txt", "target")
    run(sandbox, f"cd {workdir} && ln -s {workdir}/target.txt abs-link && ln -s target.txt rel-link "
                 f"&& ln -s /nonexistent dangling && mkdir d && ln -s d dir-link")
    for name in ("abs-link", "rel-link"):
        info = sandbox.files.get_info(f"{workdir}/{name}")
        assert info.name == name and info.path == f"{workdir}/{name}"
        assert info.symlink_target == f"{workdir}/target.txt"  # absolute, even for a relative link
        assert info.type == FileType.FILE  # the target's type (docs/e2b.md §3.6)
        assert info.size == len("target")
        assert sandbox.files.read(f"{workdir}/{name}") == "target"
    dir_link = sandbox.files.get_info(f"{workdir}/dir-link")
    assert dir_link.symlink_target == f"{workdir}/d" and dir_link.type == FileType.DIR
    # a dangling link is still listed; reading through it is a not-found
    assert "dangling" in {e.name for e in sandbox.files.list(workdir)}
    with pytest.raises(FileNotFoundException):
        sandbox.files.read(f"{workdir}/dangling")


def test_make_dir(sandbox, workdir):
    assert sandbox.files.make_dir(f"{workdir}/new") is True
    assert sandbox.files.make_dir(f"{workdir}/new") is False
    assert sandbox.files.make_dir(f"{workdir}/a/b/c") is True  # parents are created
    assert sandbox.files.get_info(f"{workdir}/a/b/c").type == FileType.DIR
    assert sandbox.files.get_info(f"{workdir}/a/b/c").owner == "user"
    sandbox.files.write(f"{workdir}/file", "x")
    with pytest.raises(SandboxException):
        sandbox.files.make_dir(f"{workdir}/file")
    # the default user cannot create directories where it has no permission
    with pytest.raises(SandboxException):
        sandbox.files.make_dir("/root/not-yours")
    assert sandbox.files.make_dir(f"/opt/{unique()}", user="root") is True


def test_rename(sandbox, workdir):
    sandbox.files.write(f"{workdir}/old.txt", "moving")
    info = sandbox.files.rename(f"{workdir}/old.txt", f"{workdir}/new.txt")
    assert info.path == f"{workdir}/new.txt" and info.name == "new.txt"
    assert sandbox.files.exists(f"{workdir}/old.txt") is False
    assert sandbox.files.read(f"{workdir}/new.txt") == "moving"
    # directories move with their contents
    sandbox.files.write(f"{workdir}/dir1/inner.txt", "inner")
    sandbox.files.rename(f"{workdir}/dir1", f"{workdir}/dir2")
    assert sandbox.files.read(f"{workdir}/dir2/inner.txt") == "inner"
    with pytest.raises(FileNotFoundException):
        sandbox.files.rename(f"{workdir}/missing", f"{workdir}/whatever")


def test_remove(sandbox, workdir):
    sandbox.files.write(f"{workdir}/gone.txt", "x")
    sandbox.files.remove(f"{workdir}/gone.txt")
    assert sandbox.files.exists(f"{workdir}/gone.txt") is False
    sandbox.files.write_files([{"path": f"{workdir}/rmdir/a", "data": "a"}, {"path": f"{workdir}/rmdir/b/c", "data": "c"}])
    sandbox.files.remove(f"{workdir}/rmdir")  # recursive
    assert sandbox.files.exists(f"{workdir}/rmdir") is False
    sandbox.files.remove(f"{workdir}/never-existed")  # removing a missing path is fine
    # removing a symlink removes the link, not its target
    sandbox.files.write(f"{workdir}/keep.txt", "keep")
    run(sandbox, f"ln -s {workdir}/keep.txt {workdir}/link")
    sandbox.files.remove(f"{workdir}/link")
    assert sandbox.files.read(f"{workdir}/keep.txt") == "keep"
    # the default user cannot remove root's files
    with pytest.raises(SandboxException):
        sandbox.files.remove("/etc/hostname")
    assert sandbox.files.exists("/etc/hostname")


def test_files_as_root(sandbox):
    path = f"/root/{unique()}.txt"
    info = sandbox.files.write(path, "root only", user="root")
    assert info.path == path
    assert sandbox.files.get_info(path, user="root").owner == "root"
    assert sandbox.files.read(path, user="root") == "root only"
    with pytest.raises(SandboxException):
        sandbox.files.read(path)  # the default user cannot read /root
    with pytest.raises(SandboxException):
        sandbox.files.write("/etc/not-allowed", "x")  # nor write system paths


def test_upload_owner_is_the_requesting_user(sandbox, workdir):
    sandbox.files.write(f"{workdir}/mine.txt", "x")
    assert sandbox.files.get_info(f"{workdir}/mine.txt").owner == "user"
    assert run(sandbox, f"stat -c %U {workdir}/mine.txt")[1].strip() == "user"
    sandbox.files.write(f"{workdir}/deep/new/dirs/f.txt", "x")
    assert run(sandbox, f"stat -c %U {workdir}/deep/new")[1].strip() == "user"


def test_twenty_megabytes_round_trip(sandbox, workdir):
    data = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    sandbox.files.write(f"{workdir}/big.bin", data)
    assert run(sandbox, f"sha256sum {workdir}/big.bin")[1].split()[0] == digest
    got = sandbox.files.read(f"{workdir}/big.bin", format="bytes")
    assert len(got) == len(data) and hashlib.sha256(got).hexdigest() == digest
    # and a file made inside the sandbox comes out intact
    run(sandbox, f"head -c 20971520 /dev/urandom > {workdir}/made-inside.bin")
    inside = run(sandbox, f"sha256sum {workdir}/made-inside.bin")[1].split()[0]
    streamed = hashlib.sha256()
    for chunk in sandbox.files.read(f"{workdir}/made-inside.bin", format="stream"):
        streamed.update(chunk)
    assert streamed.hexdigest() == inside
