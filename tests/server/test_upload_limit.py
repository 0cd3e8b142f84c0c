"""SANDLOT_MAX_UPLOAD_BYTES on a real server: an upload past it is a JSON 413 that leaves nothing
behind, whatever shape it came in (one file or several, with or without Content-Length, gzipped)."""

from __future__ import annotations

import gzip
import os
import subprocess
import time

import httpx
import pytest

from sandlot import ResourceExhausted, Sandbox
from support import leftovers, server_cmd, start_server

LIMIT = 64 * 1024
DIR = "/home/user/up"
ORIGINAL = b"the original content\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("upload-limit") / "home", pool_size=0,
                       extra_env={"SANDLOT_MAX_UPLOAD_BYTES": str(LIMIT)})
    yield srv
    srv.stop()
    assert not leftovers(srv.home)


@pytest.fixture(scope="module")
def sandbox(server):
    with Sandbox.create(timeout=600, api_url=server.url, api_key=server.api_key) as sbx:
        yield sbx


@pytest.fixture
def files(server, sandbox):
    """Raw HTTP to the sandbox's /files, plus a fresh directory holding one existing file."""
    token = httpx.get(f"{server.url}/sandboxes/{sandbox.sandbox_id}", headers={"X-API-KEY": server.api_key},
                      timeout=30).json()["envdAccessToken"]
    sandbox.commands.run(f"rm -rf {DIR} && mkdir {DIR}")
    sandbox.files.write(f"{DIR}/keep.txt", ORIGINAL)
    headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49983", "X-Access-Token": token}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        yield http


def _assert_413(r: httpx.Response) -> None:
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"code": 413, "message": f"the upload is larger than the limit of {LIMIT} bytes"}


def _assert_untouched(sandbox, absent: tuple[str, ...] = ()) -> None:
    """keep.txt as it was, the new files gone (the agent drops them when the upload breaks off,
    which may be just after the answer, later on a loaded host), and no staging file left."""
    deadline = time.monotonic() + 20
    while True:
        names = sorted(sandbox.commands.run(f"ls -A {DIR}").stdout.split())
        if names == ["keep.txt"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert names == ["keep.txt"], names
    assert bytes(sandbox.files.read(f"{DIR}/keep.txt", format="bytes")) == ORIGINAL
    for path in absent:
        assert not sandbox.files.exists(path)


def _eventually_gone(sandbox, path: str) -> None:
    deadline = time.monotonic() + 20  # ends when it is gone; a loaded host may take a while
    while sandbox.files.exists(path):
        assert time.monotonic() < deadline, f"{path} is still there"
        time.sleep(0.05)


def _octets(http, path: str, content, **headers) -> httpx.Response:
    return http.post("/files", params={"path": path}, content=content,
                     headers={"Content-Type": "application/octet-stream", **headers})


def _chunks(data: bytes, size: int = 8192):
    """A body httpx sends chunked, without Content-Length."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "xXbOuNdArYxX", pause=None):
    """A multipart/form-data body as a stream of pieces (so: chunked, no Content-Length);
    `pause()` is called after the last part's headers, before its data."""
    for i, (name, data) in enumerate(parts):
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        if pause and i == len(parts) - 1:
            pause()
        yield from _chunks(data)
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


MULTIPART = {"Content-Type": "multipart/form-data; boundary=xXbOuNdArYxX"}


def test_one_file_with_content_length(files, sandbox):
    _assert_413(_octets(files, f"{DIR}/keep.txt", os.urandom(LIMIT + 1)))
    _assert_413(_octets(files, f"{DIR}/new.bin", os.urandom(LIMIT + 1)))
    _assert_untouched(sandbox, absent=(f"{DIR}/new.bin",))
    exact = os.urandom(LIMIT)  # the limit itself is allowed
    assert _octets(files, f"{DIR}/exact.bin", exact).status_code == 200
    assert bytes(sandbox.files.read(f"{DIR}/exact.bin", format="bytes")) == exact


def test_one_file_without_content_length(files, sandbox):
    big = os.urandom(3 * LIMIT)
    for path in (f"{DIR}/keep.txt", f"{DIR}/new.bin"):
        _assert_413(_octets(files, path, _chunks(big)))
    # small on the wire, too large once inflated
    _assert_413(_octets(files, f"{DIR}/bomb.bin", gzip.compress(b"\0" * (LIMIT + 1)), **{"Content-Encoding": "gzip"}))
    _assert_413(_octets(files, f"{DIR}/keep.txt", _chunks(gzip.compress(b"\0" * 4 * LIMIT)),
                        **{"Content-Encoding": "gzip"}))
    _assert_untouched(sandbox, absent=(f"{DIR}/new.bin", f"{DIR}/bomb.bin"))


def test_several_files_with_content_length(files, sandbox):
    half = LIMIT // 2 + 1
    r = files.post("/files", files=[("file", (f"{DIR}/a.bin", os.urandom(half))),
                                    ("file", (f"{DIR}/keep.txt", os.urandom(half)))])
    assert r.request.headers.get("content-length")
    _assert_413(r)
    _assert_untouched(sandbox, absent=(f"{DIR}/a.bin",))


def test_several_files_without_content_length(files, sandbox):
    """The files before the one that passes the limit were complete, yet none is kept."""
    small = 10 * 1024
    parts = [(f"{DIR}/first.bin", os.urandom(small)), (f"{DIR}/keep.txt", os.urandom(small)),
             (f"{DIR}/third.bin", os.urandom(small)), (f"{DIR}/big.bin", os.urandom(LIMIT))]

    def all_but_the_last_arrived():  # else the server may get the whole body at once and refuse it first
        deadline = time.monotonic() + 10
        while sandbox.commands.run(f"stat -c %s {DIR}/third.bin 2>/dev/null || true").stdout.strip() != str(small):
            assert time.monotonic() < deadline, "the first parts never arrived"
            time.sleep(0.02)

    _assert_413(files.post("/files", content=_multipart(parts, pause=all_but_the_last_arrived), headers=MULTIPART))
    _assert_untouched(sandbox, absent=(f"{DIR}/first.bin", f"{DIR}/third.bin", f"{DIR}/big.bin"))
    # gzipped: its Content-Length says nothing of the inflated size
    body = gzip.compress(b"".join(_multipart(parts)))
    r = files.post("/files", content=body, headers={**MULTIPART, "Content-Encoding": "gzip"})
    assert r.request.headers["content-length"] == str(len(body))
    _assert_413(r)
    _assert_untouched(sandbox, absent=(f"{DIR}/first.bin", f"{DIR}/third.bin", f"{DIR}/big.bin"))


def test_several_files_without_content_length_within_the_limit(files, sandbox):
    """Held until the body ends, then all written, in order (a later part for the same path wins)."""
    a, b, c = os.urandom(1000), os.urandom(2000), os.urandom(3000)
    r = files.post("/files", content=_multipart([(f"{DIR}/a.bin", a), (f"{DIR}/keep.txt", b), (f"{DIR}/a.bin", c)]),
                   headers=MULTIPART)
    assert r.status_code == 200, r.text
    assert [e["path"] for e in r.json()] == [f"{DIR}/a.bin", f"{DIR}/keep.txt", f"{DIR}/a.bin"]
    assert bytes(sandbox.files.read(f"{DIR}/a.bin", format="bytes")) == c
    assert bytes(sandbox.files.read(f"{DIR}/keep.txt", format="bytes")) == b
    assert sorted(sandbox.commands.run(f"ls -A {DIR}").stdout.split()) == ["a.bin", "keep.txt"]
    # more files than are held open at once still arrive
    many = [(f"{DIR}/m/{i}.txt", str(i).encode()) for i in range(80)]
    r = files.post("/files", content=_multipart(many), headers=MULTIPART)
    assert r.status_code == 200 and len(r.json()) == 80, r.text
    assert sandbox.commands.run(f"cat {DIR}/m/79.txt {DIR}/m/0.txt").stdout == "790"
    # a file the agent refuses (a directory is in the way): a JSON 400, the files after it dropped
    r = files.post("/files", content=_multipart([(f"{DIR}/m", b), (f"{DIR}/x.bin", a)]), headers=MULTIPART)
    assert r.status_code == 400 and r.json()["code"] == 400, r.text
    _eventually_gone(sandbox, f"{DIR}/x.bin")


def test_sdks_see_the_413(server, sandbox, files, monkeypatch):
    with pytest.raises(ResourceExhausted, match="limit"):
        sandbox.files.write(f"{DIR}/keep.txt", os.urandom(LIMIT + 1))
    with pytest.raises(ResourceExhausted, match="limit"):
        sandbox.files.write_files([(f"{DIR}/n1", os.urandom(LIMIT // 2)), (f"{DIR}/keep.txt", os.urandom(LIMIT))])
    from e2b import Sandbox as E2BSandbox
    from e2b import SandboxException

    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    e2b = E2BSandbox.connect(sandbox.sandbox_id)
    with pytest.raises(SandboxException):
        e2b.files.write(f"{DIR}/keep.txt", os.urandom(LIMIT + 1))
    with pytest.raises(SandboxException):
        e2b.files.write_files([{"path": f"{DIR}/n2", "data": b"x" * 100},
                               {"path": f"{DIR}/keep.txt", "data": os.urandom(LIMIT)}])
    _assert_untouched(sandbox, absent=(f"{DIR}/n1", f"{DIR}/n2"))
    e2b.files.write(f"{DIR}/fits.txt", "fine")  # the sandbox still takes uploads within the limit
    assert sandbox.files.read(f"{DIR}/fits.txt") == "fine"


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_malformed_limit_stops_the_server_with_a_message(tmp_path, value):
    env = {**os.environ, "SANDLOT_HOME": str(tmp_path), "SANDLOT_MAX_UPLOAD_BYTES": value}
    run = subprocess.run([*server_cmd(), "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run
    assert "SANDLOT_MAX_UPLOAD_BYTES" in run.stderr and repr(value) in run.stderr, run.stderr
