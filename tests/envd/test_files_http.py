"""The /files API: SDK reads and writes, signed URLs, limits and malformed requests."""

from __future__ import annotations

import gzip
import io
import time

import httpx
import pytest
from envd_support import MAX_UPLOAD
from e2b import AuthenticationException, FileNotFoundException, InvalidArgumentException


@pytest.fixture
def http(envd):
    """Raw HTTP to the main sandbox, with its routing header and access token."""
    with httpx.Client(base_url=envd.url, headers={"E2b-Sandbox-Id": "sbxmain", "X-Access-Token": "token-main"},
                      timeout=30) as client:
        yield client


def test_read_and_write_text_bytes_and_streams(sandbox, workdir):
    sandbox.files.write(f"{workdir}/t.txt", "héllo")
    assert sandbox.files.read(f"{workdir}/t.txt") == "héllo"
    data = bytes(range(256)) * 1000
    sandbox.files.write(f"{workdir}/b.bin", data)
    assert sandbox.files.read(f"{workdir}/b.bin", format="bytes") == data
    sandbox.files.write(f"{workdir}/from-file.bin", io.BytesIO(data))  # octet-stream, streamed
    sandbox.files.write(f"{workdir}/from-iter.bin", (data[i:i + 4096] for i in range(0, len(data), 4096)))
    with sandbox.files.read(f"{workdir}/from-iter.bin", format="stream") as stream:
        assert b"".join(stream) == data
    assert sandbox.files.read(f"{workdir}/from-file.bin", format="bytes") == data


def test_write_many_files_at_once(sandbox, workdir):
    infos = sandbox.files.write_files([{"path": f"{workdir}/one.txt", "data": "1"},
                                       {"path": f"{workdir}/nested/two.txt", "data": b"2"}])
    assert [(i.name, i.path) for i in infos] == [("one.txt", f"{workdir}/one.txt"),
                                                 ("two.txt", f"{workdir}/nested/two.txt")]
    assert sandbox.files.read(f"{workdir}/nested/two.txt") == "2"


def test_gzip_upload_and_download(sandbox, workdir):
    text = "compressible " * 10_000
    sandbox.files.write(f"{workdir}/gz.txt", text, gzip=True, metadata={"kind": "gz"})
    assert sandbox.files.read(f"{workdir}/gz.txt", gzip=True) == text
    assert sandbox.files.get_info(f"{workdir}/gz.txt").metadata == {"kind": "gz"}


def test_download_errors(sandbox, workdir, http):
    with pytest.raises(FileNotFoundException):
        sandbox.files.read(f"{workdir}/missing")
    r = http.get("/files", params={"path": f"{workdir}/missing"})
    assert r.status_code == 404
    assert r.json() == {"code": 404, "message": f"path '{workdir}/missing' does not exist"}
    r = http.get("/files", params={"path": workdir})
    assert r.status_code == 400 and r.json()["code"] == 400
    with pytest.raises(InvalidArgumentException):
        sandbox.files.read(workdir)
    r = http.get("/files", params={"path": "/etc/hostname"})
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "inline; filename=\"hostname\"; filename*=UTF-8''hostname"


def test_upload_answer(http, workdir):
    r = http.post("/files", params={"path": f"{workdir}/raw.txt"}, content=b"raw",
                  headers={"Content-Type": "application/octet-stream", "X-Metadata-Team": "A"})
    assert r.status_code == 200
    assert r.json() == [{"name": "raw.txt", "type": "file", "path": f"{workdir}/raw.txt", "metadata": {"team": "A"}}]


def test_signed_urls(sandbox, workdir):
    up = sandbox.upload_url(f"{workdir}/signed.txt", use_signature_expiration=60)
    assert "signature=" in up
    with httpx.Client() as bare:  # no routing header, no token: the signature finds the sandbox
        assert bare.post(up, files={"file": ("signed.txt", b"via url")}).status_code == 200
        down = sandbox.download_url(f"{workdir}/signed.txt")
        assert bare.get(down).content == b"via url"
        # The signature is bound to the operation and the path.
        assert bare.post(down, files={"file": ("x", b"x")}).status_code == 401
        other = sandbox.download_url(f"{workdir}/other.txt").split("signature=")[1]
        assert bare.get(down.split("signature=")[0] + "signature=" + other).status_code == 401


def test_expired_signature(sandbox, workdir):
    sandbox.files.write(f"{workdir}/e.txt", "e")
    url = sandbox.download_url(f"{workdir}/e.txt", use_signature_expiration=-5)
    r = httpx.get(url)
    assert (r.status_code, r.json()) == (401, {"code": 401, "message": "signature is already expired"})


def test_wrong_token(envd, workdir):
    for headers in ({"X-Access-Token": "wrong"}, {}):
        r = httpx.get(f"{envd.url}/files", params={"path": f"{workdir}/x"}, headers={"E2b-Sandbox-Id": "sbxmain", **headers})
        assert r.status_code == 401
        assert r.json() == {"code": 401, "message": "unauthorized access, please provide a valid access token "
                                                    "or method signing if supported"}
    r = httpx.post(f"{envd.url}/process.Process/List", json={},
                   headers={"E2b-Sandbox-Id": "sbxmain", "X-Access-Token": "wrong", "Connect-Protocol-Version": "1"})
    assert r.status_code == 401
    assert httpx.get(f"{envd.url}/health", headers={"E2b-Sandbox-Id": "sbxmain"}).status_code == 204


def test_wrong_token_through_the_sdk(envd, sandbox):
    from e2b import Sandbox

    stranger = Sandbox(sandbox_id="sbxmain", sandbox_domain=None, envd_version=sandbox._envd_version,
                       envd_access_token="wrong", connection_config=type(sandbox.connection_config)(
                           api_key="e2b_" + "0" * 40, sandbox_url=envd.url,
                           extra_sandbox_headers={"E2b-Sandbox-Id": "sbxmain", "X-Access-Token": "wrong"}))
    with pytest.raises(AuthenticationException):
        stranger.files.read("/etc/hostname")
    with pytest.raises(AuthenticationException):
        stranger.commands.run("true")


def test_oversize_upload_is_413(http, workdir):
    big = b"x" * (MAX_UPLOAD + 1)
    r = http.post("/files", params={"path": f"{workdir}/big"}, content=big,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and r.json()["code"] == 413

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"y" * 65536

    r = http.post("/files", params={"path": f"{workdir}/big"}, content=chunks(),
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and r.json()["code"] == 413
    bomb = gzip.compress(b"\0" * (MAX_UPLOAD + 1))  # small on the wire, too large inflated
    r = http.post("/files", params={"path": f"{workdir}/big"}, content=bomb,
                  headers={"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["code"] == 413


MULTIPART = "multipart/form-data; boundary=b"
OCTETS = "application/octet-stream"


@pytest.mark.parametrize("body, headers", [
    (b"no boundary here", {"Content-Type": "multipart/form-data"}),
    (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nunterminated', {"Content-Type": MULTIPART}),
    (b"garbage", {"Content-Type": MULTIPART}),
    (b"--b--\r\n", {"Content-Type": MULTIPART}),
    (b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n', {"Content-Type": MULTIPART}),
    (b"text", {"Content-Type": "text/plain"}),
    (b"", {}),
    (b"not gzip", {"Content-Type": OCTETS, "Content-Encoding": "gzip"}),
    (b"x", {"Content-Type": OCTETS, "Content-Encoding": "br"}),
    (b"x", {"Content-Type": OCTETS, "X-Metadata-": "empty key"}),
])
def test_malformed_upload_is_400(http, workdir, body, headers):
    r = http.post("/files", params={"path": f"{workdir}/m"}, content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400


def test_malformed_rpc_is_400(envd):
    r = httpx.post(f"{envd.url}/process.Process/List", content=b"{not json",
                   headers={"E2b-Sandbox-Id": "sbxmain", "X-Access-Token": "token-main",
                            "Content-Type": "application/json", "Connect-Protocol-Version": "1"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_argument"


def test_many_files_for_one_path_is_400(http, workdir):
    r = http.post("/files", params={"path": f"{workdir}/one"}, files=[("file", ("a", b"a")), ("file", ("b", b"b"))])
    assert r.status_code == 400 and r.json()["code"] == 400


def test_path_traversal_stays_a_sandbox_path(sandbox, http):
    # The agent resolves paths inside the sandbox, where /etc/passwd is the sandbox's own. On this
    # host test the agent runs unsandboxed, so it reaches the host's: what matters is that every
    # form of the path is handed over as given and nothing breaks.
    climb = "../" * 20 + "etc/passwd"
    assert sandbox.files.get_info(climb).path == "/etc/passwd"
    assert "root:" in sandbox.files.read(climb)
    assert http.get("/files", params={"path": "../../etc/passwd"}).status_code in (200, 404)
    assert httpx.get(sandbox.download_url(climb)).status_code == 200


def test_large_upload_streams(sandbox, workdir):
    size = 6 * 1024 * 1024
    started = time.monotonic()
    sandbox.files.write(f"{workdir}/large.bin", (b"z" * 65536 for _ in range(size // 65536)))
    assert sandbox.files.get_info(f"{workdir}/large.bin").size == size
    assert time.monotonic() - started < 30
