"""envd access control and hostile input: access tokens, signed file URLs, path tricks and malformed
requests against /files and the Connect RPCs (docs/e2b.md §3.8–§3.13).

Raw requests use httpx directly, the way an attacker (or a curl user) would.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from e2b import FileNotFoundException, InvalidArgumentException, Sandbox, SandboxException
from e2b_support import SANDBOX_NOT_FOUND, SDK_SENDS_SECURE, assert_json_error, envd_headers, run
from support import access_token, checked_server, team_key, unique

UNAUTHORIZED = "unauthorized access, please provide a valid access token or method signing if supported"
EXPIRED = {"code": 401, "message": "signature is already expired"}


@pytest.fixture(scope="module")
def token(server, sandbox):
    return access_token(server, sandbox.sandbox_id)


@pytest.fixture(scope="module")
def neighbour(sdk_env):
    """A second running sandbox, so nothing can be inferred from there being only one."""
    from e2b import Sandbox

    sbx = Sandbox.create(timeout=600)
    yield sbx
    sbx.kill()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def with_query(url: str, **changes: str | None) -> str:
    """The URL with query parameters replaced (None removes one)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def sign(path: str, operation: str, user: str, token: str, expiration: int | None = None) -> str:
    """e2b's v1 file URL signature (docs/e2b.md §3.12), recomputed here to forge near-miss signatures."""
    raw = f"{path}:{operation}:{user}:{token}" + (f":{expiration}" if expiration is not None else "")
    return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()


def connect_unary(http, method: str, body: dict, headers: dict) -> httpx.Response:
    return http.post(f"/{method}", json=body, headers={"Content-Type": "application/json",
                                                         "Connect-Protocol-Version": "1", **headers})


# ---- access token ------------------------------------------------------------------------------


def test_files_require_the_access_token(http, server, sandbox, token, neighbour):
    sandbox.files.write("/home/user/secret.txt", "top secret")
    params = {"path": "/home/user/secret.txt"}
    for headers in (envd_headers(sandbox.sandbox_id), envd_headers(sandbox.sandbox_id, "wrong-token"),
                    envd_headers(sandbox.sandbox_id, ""), envd_headers(sandbox.sandbox_id, token + "x"),
                    # another sandbox's valid token does not open this one
                    envd_headers(sandbox.sandbox_id, access_token(server, neighbour.sandbox_id))):
        r = http.get("/files", params=params, headers=headers)
        body = assert_json_error(r, 401)
        assert "top secret" not in r.text
        assert body["message"] == UNAUTHORIZED
    ok = http.get("/files", params=params, headers=envd_headers(sandbox.sandbox_id, token))
    assert ok.status_code == 200 and ok.content == b"top secret"


def test_uploads_require_the_access_token(http, sandbox, token):
    name = f"/home/user/{unique()}.txt"
    r = http.post("/files", params={"path": name}, files={"file": ("x", b"sneaky")},
                  headers=envd_headers(sandbox.sandbox_id, "nope"))
    assert_json_error(r, 401)
    r = http.post("/files", params={"path": name}, files={"file": ("x", b"sneaky")},
                  headers=envd_headers(sandbox.sandbox_id))
    assert_json_error(r, 401)
    assert sandbox.files.exists(name) is False
    r = http.post("/files", params={"path": name}, files={"file": ("x", b"allowed")},
                  headers=envd_headers(sandbox.sandbox_id, token))
    assert r.status_code == 200, r.text
    [entry] = r.json()
    assert entry["path"] == name and entry["name"] == name.rsplit("/", 1)[1]
    assert sandbox.files.read(name) == "allowed"


def test_rpcs_require_the_access_token(http, sandbox, token):
    for headers in (envd_headers(sandbox.sandbox_id), envd_headers(sandbox.sandbox_id, "wrong")):
        r = connect_unary(http, "filesystem.Filesystem/Stat", {"path": "/home/user"}, headers)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/json") and r.json()["message"]
        # a command must not start without the token
        marker = unique("pwned")
        r = http.post("/process.Process/Start",
                      content=_envelope({"process": {"cmd": "/bin/bash", "args": ["-c", f"touch /tmp/{marker}"]}}),
                      headers={"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
                               **headers})
        assert r.status_code == 401 or b"unauthenticated" in r.content, (r.status_code, r.content[:300])
        time.sleep(0.2)
        assert sandbox.files.exists(f"/tmp/{marker}") is False
    ok = connect_unary(http, "filesystem.Filesystem/Stat", {"path": "/home/user"},
                       envd_headers(sandbox.sandbox_id, token))
    assert ok.status_code == 200, ok.text
    assert ok.json()["entry"]["path"] == "/home/user"


def test_envs_route_requires_the_access_token(http, server, make_sandbox):
    # GET /envs hands the sandbox-wide env vars (often secrets) to the in-sandbox code interpreter
    sbx = make_sandbox(envs={"API_SECRET": "s3cr3t-value"})
    for headers in (envd_headers(sbx.sandbox_id), envd_headers(sbx.sandbox_id, "wrong")):
        r = http.get("/envs", headers=headers)
        assert_json_error(r, 401)
        assert "s3cr3t-value" not in r.text
    r = http.get("/envs", headers=envd_headers(sbx.sandbox_id, access_token(server, sbx.sandbox_id)))
    assert r.status_code == 200, r.text
    assert r.json().get("API_SECRET") == "s3cr3t-value"


def test_secure_false_works_without_an_access_token(http, server, make_sandbox, token, sandbox):
    sbx = make_sandbox(secure=False)
    r = http.get(f"/sandboxes/{sbx.sandbox_id}", headers={"X-API-KEY": server.api_key})
    if SDK_SENDS_SECURE:  # the 2.4x line asks for an unsecured sandbox
        assert r.json()["envdAccessToken"] is None, r.text
    else:  # the current line accepts secure=False and ignores it: every sandbox is secured
        assert r.json()["envdAccessToken"], r.text
    assert sbx.commands.run("echo open").stdout == "open\n"
    # an unsecured sandbox, asked for over REST as the 2.4x line does: the SDK connects without a token
    r = http.post("/sandboxes", json={"templateID": "base", "timeout": 120, "secure": False},
                  headers={"X-API-KEY": server.api_key})
    assert r.status_code == 201 and r.json()["envdAccessToken"] is None, r.text
    opened = Sandbox.connect(r.json()["sandboxID"])
    try:
        assert opened.commands.run("echo open").stdout == "open\n"
        opened.files.write("/home/user/open.txt", "readable")
        assert opened.files.read("/home/user/open.txt") == "readable"
        headers = envd_headers(opened.sandbox_id)  # raw requests, no token at all
        r = http.get("/files", params={"path": "/home/user/open.txt"}, headers=headers)
        assert r.status_code == 200 and r.content == b"readable"
        assert connect_unary(http, "filesystem.Filesystem/Stat", {"path": "/home/user"}, headers).status_code == 200
        # a secured sandbox stays closed next to it
        for headers in (envd_headers(sandbox.sandbox_id), envd_headers(sandbox.sandbox_id, "")):
            assert_json_error(http.get("/files", params={"path": "/home/user"}, headers=headers), 401)
    finally:
        opened.kill()


def test_an_unsecured_sandbox_alone_is_not_reached_without_its_id():
    """Its id is its only secret: a caller with no key, no token and no sandbox id must not reach
    another team's `secure: false` sandbox because it happens to be the only one running."""
    with checked_server() as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        key = team_key(srv)[2]
        r = http.post("/sandboxes", json={"templateID": "base", "timeout": 120, "secure": False},
                      headers={"X-API-KEY": key})
        assert r.status_code == 201 and r.json()["envdAccessToken"] is None, r.text
        sid = r.json()["sandboxID"]
        try:
            marker = unique("/tmp/pwned-")
            r = http.post("/process.Process/Start", content=_envelope(
                {"process": {"cmd": "/bin/bash", "args": ["-c", f"touch {marker}"]}}),
                headers={"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"})
            assert r.status_code == 401 or b"unauthenticated" in r.content, r.content[:300]
            for path in ("/files?path=/etc/hostname", "/envs"):
                assert_json_error(http.get(path), 401)
            # named, it admits everyone, as E2B's does
            named = envd_headers(sid)
            r = connect_unary(http, "filesystem.Filesystem/Stat", {"path": marker}, named)
            assert r.status_code == 404, r.text  # the command above never ran
            assert http.get("/files", params={"path": "/etc/hostname"}, headers=named).status_code == 200
        finally:
            http.delete(f"/sandboxes/{sid}", headers={"X-API-KEY": key})


def _envelope(message: dict) -> bytes:
    import json

    payload = json.dumps(message).encode()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def test_health_needs_no_token(http, sandbox):
    r = http.get("/health", headers=envd_headers(sandbox.sandbox_id))
    assert r.status_code // 100 == 2


# ---- signed URLs -------------------------------------------------------------------------------


def test_signed_download_url_works_without_any_headers(sandbox, neighbour):
    path = f"/home/user/{unique()}.bin"
    data = bytes(range(256)) * 10
    sandbox.files.write(path, data)
    url = sandbox.download_url(path)
    assert "signature=" in url
    r = httpx.get(url, timeout=30)  # no routing header, no token: the signature alone
    assert r.status_code == 200, r.text
    assert r.content == data
    # the neighbour's URL reaches the neighbour, not this sandbox
    neighbour.files.write(path, b"neighbour's")
    assert httpx.get(neighbour.download_url(path), timeout=30).content == b"neighbour's"


def test_signed_upload_url_works_without_any_headers(sandbox, neighbour):
    path = f"/home/user/{unique()}.txt"
    url = sandbox.upload_url(path)
    r = httpx.post(url, files={"file": ("ignored-name", b"uploaded via signed url")}, timeout=30)
    assert r.status_code == 200, r.text
    assert sandbox.files.read(path) == "uploaded via signed url"
    assert neighbour.files.exists(path) is False


@pytest.mark.parametrize("name", ["plus+and space?.txt", "ünï%2F#.txt"])
def test_signed_urls_for_awkward_and_relative_paths(sandbox, name):
    # the signature covers the path exactly as given, relative paths included (docs/e2b.md §3.12)
    relative = f"{unique('rel')}-{name}"
    url = sandbox.upload_url(relative)
    r = httpx.post(url, files={"file": ("f", b"signed " + name.encode())}, timeout=30)
    assert r.status_code == 200, r.text
    [entry] = r.json()
    assert entry["path"] == f"/home/user/{relative}"
    assert sandbox.files.read(f"/home/user/{relative}") == "signed " + name
    r = httpx.get(sandbox.download_url(relative), timeout=30)
    assert r.status_code == 200 and r.text == "signed " + name
    r = httpx.get(sandbox.download_url(f"/home/user/{relative}"), timeout=30)
    assert r.status_code == 200 and r.text == "signed " + name


def test_signed_urls_with_user_and_expiration(sandbox):
    path = f"/root/{unique()}.txt"
    up = sandbox.upload_url(path, user="root", use_signature_expiration=120)
    assert "signature_expiration=" in up and "username=root" in up
    assert httpx.post(up, files={"file": ("f", b"root's file")}, timeout=30).status_code == 200
    assert sandbox.files.get_info(path, user="root").owner == "root"
    down = sandbox.download_url(path, user="root", use_signature_expiration=120)
    r = httpx.get(down, timeout=30)
    assert r.status_code == 200 and r.content == b"root's file"
    # the default user's URL for the same path may not read root's file
    r = httpx.get(sandbox.download_url(path), timeout=30)
    assert r.status_code in (401, 403), (r.status_code, r.text)


@pytest.fixture(params=["headerless", "routed"])
def url_headers(request, sandbox, neighbour):
    """Signed URLs are fetched without headers (a browser, curl) or with the routing header (a proxy,
    the SDK's own client). With the neighbour running, a headerless request cannot be routed by
    elimination: only the signature can tell the sandbox, and a bad one must still be a 401."""
    return {} if request.param == "headerless" else envd_headers(sandbox.sandbox_id)


def test_expired_signature_is_refused_with_the_exact_body(sandbox, url_headers):
    path = f"/home/user/{unique()}.txt"
    sandbox.files.write(path, "soon expired")
    # already expired when made (the SDK does not refuse a negative lifetime)
    for url, send in ((sandbox.download_url(path, use_signature_expiration=-5), "get"),
                      (sandbox.upload_url(path, use_signature_expiration=-5), "post")):
        if send == "get":
            r = httpx.get(url, headers=url_headers, timeout=30)
        else:
            r = httpx.post(url, files={"file": ("f", b"overwritten")}, headers=url_headers, timeout=30)
        assert r.status_code == 401, (send, r.status_code, r.text)
        assert r.json() == EXPIRED, send  # clients compare this body
    assert sandbox.files.read(path) == "soon expired"
    # valid until it expires: expiration = int(now) + 2 leaves at least a second to use it
    url = sandbox.download_url(path, use_signature_expiration=2)
    expiration = int(parse_qs(urlsplit(url).query)["signature_expiration"][0])
    assert httpx.get(url, headers=url_headers, timeout=30).content == b"soon expired"
    time.sleep(max(0.0, expiration + 1.1 - time.time()))
    r = httpx.get(url, headers=url_headers, timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.json() == EXPIRED


def test_tampered_signatures_are_refused(sandbox, token, url_headers):
    secret = f"/home/user/{unique()}.txt"
    public = f"/home/user/{unique()}.txt"
    sandbox.files.write(secret, "secret")
    sandbox.files.write(public, "public")
    url = sandbox.download_url(public)
    assert httpx.get(url, headers=url_headers, timeout=30).status_code == 200
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    expiring = sandbox.download_url(public, use_signature_expiration=60)
    exp = int(parse_qs(urlsplit(expiring).query)["signature_expiration"][0])
    cases = {
        "flipped character": with_query(url, signature=flipped),
        "no signature": with_query(url, signature=None),
        "empty signature": with_query(url, signature=""),
        "garbage": with_query(url, signature="v1_" + "A" * 43),
        "other path, same signature": with_query(url, path=secret),
        "traversal to other path": with_query(url, path=public + "/../" + secret.rsplit("/", 1)[1]),
        "other user, same signature": with_query(url, username="root"),
        "write signature used to read": with_query(url, signature=sign(public, "write", "", token)),
        "expiration added to an unexpiring signature": with_query(url, signature_expiration=str(int(time.time()) + 60)),
        "expiration extended": with_query(expiring, signature_expiration=str(exp + 3600)),
        "expiration removed": with_query(expiring, signature_expiration=None),
        "non-numeric expiration": with_query(expiring, signature_expiration="soon"),
        "signed with a wrong token": with_query(url, signature=sign(public, "read", "", "not-the-token")),
    }
    for name, bad in cases.items():
        r = httpx.get(bad, headers=url_headers, timeout=30)
        assert r.status_code == 401, (name, r.status_code, r.text[:200])
        assert r.json()["code"] == 401, name
        assert b"secret" not in r.content and b"public" not in r.content, name
    # a read signature cannot be used to upload
    r = httpx.post(url, files={"file": ("f", b"overwrite")}, headers=url_headers, timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)
    assert sandbox.files.read(public) == "public"


def test_validly_signed_odd_expirations_are_4xx(sandbox, token, url_headers):
    """Expirations that str.isdigit() or int() would take but are no unix time ("²", Arabic-Indic
    digits, thousands of digits): even correctly signed, a clear 4xx, never a 500."""
    path = f"/home/user/{unique()}.txt"
    sandbox.files.write(path, "odd")
    base = sandbox.download_url(path)
    user = parse_qs(urlsplit(base).query).get("username", [""])[0]
    for expiration in ("\u00b2", "\u0661\u0662\u0663", "9" * 5000, "+5", " 5", "-5"):
        url = with_query(base, signature_expiration=expiration,
                         signature=sign(path, "read", user, token, expiration))
        r = httpx.get(url, headers=url_headers, timeout=30)
        body = assert_json_error(r, (400, 401))
        assert "odd" not in body["message"], expiration


# ---- path tricks through the file API ---------------------------------------------------------


def _host_only_lines(host_file: str, sandbox_text: str) -> list[str]:
    """Lines of a host file that the sandbox's copy does not have (never printed: may be secret)."""
    try:
        host = Path(host_file).read_text().splitlines()
    except OSError:
        return []
    inside = set(sandbox_text.splitlines())
    return [line for line in host if line.strip() and line not in inside]


def test_dot_dot_paths_stay_inside_the_sandbox(sandbox, http, token):
    inside = run(sandbox, "cat /etc/passwd")[1]
    assert "user:x:1000" in inside
    host_only = _host_only_lines("/etc/passwd", inside)
    for path in ("../../etc/passwd", "/home/user/../../etc/passwd", "../../../../../../../../etc/passwd",
                 "/../../../etc/passwd", "./../.././../etc//passwd"):
        text = sandbox.files.read(path)
        assert text == inside, path
        leaked = any(line in text for line in host_only)
        assert not leaked, f"{path}: the sandbox read shows host accounts"
    # raw, with the traversal percent-encoded
    r = http.get("/files?path=..%2F..%2F..%2F..%2Fetc%2Fpasswd", headers=envd_headers(sandbox.sandbox_id, token))
    assert r.status_code == 200 and r.text == inside
    # a file that exists only on the host is not reachable by any spelling
    marker = Path("/tmp") / f"sandlot-e2b-host-{uuid.uuid4().hex}"
    marker.write_text("host only")
    try:
        for path in (str(marker), f"../../..{marker}", f"/proc/1/root{marker}", f"/proc/self/root{marker}"):
            with pytest.raises(SandboxException) as info:
                sandbox.files.read(path)
            assert "host only" not in str(info.value)
    finally:
        marker.unlink()


def test_symlinks_resolve_inside_the_sandbox(sandbox, http, token, workdir):
    run(sandbox, f"cd {workdir} && ln -s /etc/shadow shadow-link && ln -s ../../.. up && ln -s /etc etc-link")
    # the default user may not read the sandbox's /etc/shadow through a link: a clean 4xx, no content
    with pytest.raises(SandboxException):
        sandbox.files.read(f"{workdir}/shadow-link")
    r = http.get("/files", params={"path": f"{workdir}/shadow-link"}, headers=envd_headers(sandbox.sandbox_id, token))
    assert_json_error(r, (401, 403))
    assert "root:" not in r.text
    # as root the link gives the SANDBOX's shadow file, never the host's
    sandbox_shadow = run(sandbox, "cat /etc/shadow", user="root")[1]
    through_link = sandbox.files.read(f"{workdir}/shadow-link", user="root")
    assert through_link == sandbox_shadow
    host_only = _host_only_lines("/etc/shadow", sandbox_shadow)
    assert not any(line in through_link for line in host_only), "host /etc/shadow lines leaked"
    # a link climbing out of home ends at the sandbox's root
    assert sandbox.files.read(f"{workdir}/up/etc/passwd") == run(sandbox, "cat /etc/passwd")[1]
    root_names = {e.name for e in sandbox.files.list(f"{workdir}/up")}
    assert root_names == set(run(sandbox, "ls -A /")[1].split())
    assert "work" not in root_names or not Path("/work").exists()
    # writing through a link to /etc: refused for the user, confined to the sandbox for root
    name = unique("evil")
    with pytest.raises(SandboxException):
        sandbox.files.write(f"{workdir}/etc-link/{name}", "x")
    sandbox.files.write(f"{workdir}/etc-link/{name}", "inside only", user="root")
    assert run(sandbox, f"cat /etc/{name}")[1] == "inside only"
    assert not Path(f"/etc/{name}").exists(), "a sandbox write landed on the host"


def test_reading_a_directory_is_a_client_error(sandbox, http, token, workdir):
    with pytest.raises(InvalidArgumentException):
        sandbox.files.read(workdir)
    r = http.get("/files", params={"path": workdir}, headers=envd_headers(sandbox.sandbox_id, token))
    assert_json_error(r, 400)


def test_reading_a_missing_file(sandbox, http, token, workdir):
    with pytest.raises(FileNotFoundException):
        sandbox.files.read(f"{workdir}/missing.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.read(f"{workdir}/missing-dir/missing.txt", format="bytes")
    r = http.get("/files", params={"path": f"{workdir}/missing.txt"}, headers=envd_headers(sandbox.sandbox_id, token))
    assert_json_error(r, 404)


def test_uploading_onto_a_directory_is_refused(sandbox, http, token, workdir):
    sandbox.files.write(f"{workdir}/d/inside.txt", "keep me")
    with pytest.raises(SandboxException):
        sandbox.files.write(f"{workdir}/d", "clobber")
    r = http.post("/files", params={"path": f"{workdir}/d"}, files={"file": ("d", b"clobber")},
                  headers=envd_headers(sandbox.sandbox_id, token))
    assert_json_error(r, 400)
    r = http.post("/files", params={"path": f"{workdir}/d"}, content=b"clobber",
                  headers=envd_headers(sandbox.sandbox_id, token, **{"Content-Type": "application/octet-stream"}))
    assert_json_error(r, 400)
    assert sandbox.files.get_info(f"{workdir}/d").type.value == "dir"
    assert sandbox.files.read(f"{workdir}/d/inside.txt") == "keep me"


def test_odd_paths_are_client_errors(sandbox, http, token, workdir):
    headers = envd_headers(sandbox.sandbox_id, token)
    for path in ("", "a\x00b", "/" + "x" * 5000, f"{workdir}/" + "y" * 300):
        r = http.get("/files", params={"path": path}, headers=headers)
        assert 400 <= r.status_code < 500, (repr(path[:20]), r.status_code, r.text[:200])
        assert_json_error(r, r.status_code)
    r = http.get("/files", headers=headers)  # no path at all
    assert_json_error(r, 400)
    r = http.get("/files", params={"path": "/etc/hostname", "username": "nosuchuser"}, headers=headers)
    assert_json_error(r, 401)


# ---- malformed requests ------------------------------------------------------------------------


def test_malformed_uploads_are_400(sandbox, http, token, workdir):
    headers = envd_headers(sandbox.sandbox_id, token)
    target = f"{workdir}/malformed.txt"
    cases = {
        "garbage multipart": (b"this is not multipart at all", "multipart/form-data; boundary=xyz"),
        "no boundary": (b"--xyz\r\n\r\n", "multipart/form-data"),
        "truncated part": (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\npartial',
                           "multipart/form-data; boundary=xyz"),
        "no file part": (b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\nvalue\r\n--xyz--\r\n',
                         "multipart/form-data; boundary=xyz"),
        "empty multipart": (b"--xyz--\r\n", "multipart/form-data; boundary=xyz"),
        "wrong content type": (b"plain text", "text/plain"),
        "no content type": (b"plain text", None),
    }
    for name, (body, content_type) in cases.items():
        h = dict(headers)
        if content_type:
            h["Content-Type"] = content_type
        r = http.post("/files", params={"path": target}, content=body, headers=h)
        assert r.status_code == 400, (name, r.status_code, r.text[:300])
        assert_json_error(r, 400)
    # a gzip upload that is not gzip
    r = http.post("/files", params={"path": target}, content=b"not gzip",
                  headers={**headers, "Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
    assert_json_error(r, 400)
    # several files for one path
    r = http.post("/files", params={"path": target}, files=[("file", ("a", b"1")), ("file", ("b", b"2"))],
                  headers=headers)
    assert_json_error(r, 400)
    # octet-stream without a path
    r = http.post("/files", content=b"x", headers={**headers, "Content-Type": "application/octet-stream"})
    assert_json_error(r, 400)
    # the sandbox still works afterwards
    assert sandbox.files.write(target, "fine").path == target
    assert sandbox.files.read(target) == "fine"


def test_a_failed_upload_leaves_the_destination_alone(sandbox, http, token, workdir):
    """An upload answered with an error must not have changed anything: the client is told it failed."""
    headers = envd_headers(sandbox.sandbox_id, token)
    existing, fresh = f"{workdir}/existing.txt", f"{workdir}/fresh.txt"
    sandbox.files.write(existing, "original content")
    truncated = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\npartial'
    gzip_cut = __import__("gzip").compress(b"new content " * 1000)[:-20]
    for path in (existing, fresh):
        r = http.post("/files", params={"path": path}, content=truncated,
                      headers={**headers, "Content-Type": "multipart/form-data; boundary=xyz"})
        assert_json_error(r, 400)
        r = http.post("/files", params={"path": path}, content=gzip_cut,
                      headers={**headers, "Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
        assert_json_error(r, 400)
    assert sandbox.files.read(existing) == "original content"
    assert sandbox.files.exists(fresh) is False


def test_malformed_rpcs_are_client_errors(sandbox, http, token):
    headers = envd_headers(sandbox.sandbox_id, token)
    for body in (b"{not json", b'{"path": 5}', b"null", b"\xff\xfe"):
        r = http.post("/filesystem.Filesystem/Stat", content=body,
                      headers={**headers, "Content-Type": "application/json", "Connect-Protocol-Version": "1"})
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text[:200])
        assert r.json()["code"] in ("invalid_argument", 400), r.text
    r = connect_unary(http, "filesystem.Filesystem/NoSuchMethod", {}, headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)


def test_unknown_sandbox_id_is_502(http, token):
    for method, path, kwargs in (
        ("GET", "/health", {}),
        ("GET", "/files", {"params": {"path": "/etc/passwd"}}),
        ("POST", "/files", {"params": {"path": "/tmp/x"}, "files": {"file": ("x", b"x")}}),
        ("POST", "/filesystem.Filesystem/Stat", {"json": {"path": "/"}}),
    ):
        for sandbox_id in ("inosuchsandbox00000", "../../etc", "a" * 300, "i-dash.dot"):
            r = http.request(method, path, headers=envd_headers(sandbox_id, token), **kwargs)
            assert r.status_code == 502, (method, path, sandbox_id[:20], r.status_code, r.text[:200])
            body = r.json()
            assert body["code"] == 502 and body["message"] == SANDBOX_NOT_FOUND, body
