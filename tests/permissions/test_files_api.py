"""The files API under path permissions: read, write, list, stat, rename, remove, watch, the HTTP
upload/download routes and signed URLs all go through the agent inside the sandbox, so the same
rules decide them as for any process there (as the default user and as root)."""

from __future__ import annotations

import httpx
import pytest
from perm_helpers import PROJECT, W
from support import wait_until

from sandlot import FileNotFound, PermissionDenied


@pytest.fixture(scope="module")
def sandbox(open_sandbox):
    return open_sandbox(preset="agent-safe", permissions=[{"pattern": "/config/**", "permission": "view",
                                                           "priority": 20}])


@pytest.mark.parametrize("user", [None, "root"])
def test_read_list_stat(sandbox, user):
    assert sandbox.files.read(f"{W}/main.py", user=user) == PROJECT["main.py"]
    for hidden in (".env", "secrets/api.key", ".git/HEAD"):
        with pytest.raises(FileNotFound):
            sandbox.files.read(f"{W}/{hidden}", user=user)
        with pytest.raises(FileNotFound):
            sandbox.files.get_info(f"{W}/{hidden}", user=user)
        assert not sandbox.files.exists(f"{W}/{hidden}", user=user)
    with pytest.raises(PermissionDenied):
        sandbox.files.read(f"{W}/config/db.yaml", user=user)  # view: listed, unreadable
    assert sandbox.files.get_info(f"{W}/config/db.yaml", user=user).size == len(PROJECT["config/db.yaml"])
    names = {e.name for e in sandbox.files.list(W, depth=3, user=user)}
    assert {"main.py", "config", "db.yaml", "guide.md", "result.txt"} <= names
    assert not names & {".env", ".env.local", "api.key", "server.pem", "credentials.json", ".git", "HEAD", "secrets"}


@pytest.mark.parametrize("user", [None, "root"])
def test_write_rename_remove(sandbox, user):
    for path in (f"{W}/main.py", f"{W}/new.py", f"{W}/.env", f"{W}/config/db.yaml", f"{W}/secrets/x"):
        with pytest.raises((PermissionDenied, FileNotFound)):
            sandbox.files.write(path, "changed", user=user)
    assert sandbox.files.read(f"{W}/main.py") == PROJECT["main.py"]
    sandbox.files.write(f"{W}/output/api-{user}.txt", "written", user=user)
    assert sandbox.files.read(f"{W}/output/api-{user}.txt") == "written"
    with pytest.raises(PermissionDenied):
        sandbox.files.rename(f"{W}/output/api-{user}.txt", f"{W}/docs/moved.txt", user=user)
    with pytest.raises(PermissionDenied):
        sandbox.files.rename(f"{W}/main.py", f"{W}/output/main.py", user=user)
    with pytest.raises(PermissionDenied):
        sandbox.files.remove(f"{W}/docs/guide.md", user=user)
    sandbox.files.remove(f"{W}/output/api-{user}.txt", user=user)
    assert not sandbox.files.exists(f"{W}/output/api-{user}.txt")


def test_watch_reports_only_what_may_be_seen(sandbox):
    handle = sandbox.files.watch_dir(f"{W}/output", recursive=True)
    try:
        sandbox.files.write(f"{W}/output/seen.txt", "x")
        sandbox.commands.run(f"echo no > {W}/output/.env.hidden", check=False)  # refused: no event
        # events come in order: once the last write's has come, one for the refused write would have
        # (a fixed wait could end before any came, under load)
        sandbox.files.write(f"{W}/output/last.txt", "x")
        names = set()
        wait_until(lambda: names.update(e.name for e in handle.get_new_events()) or "last.txt" in names,
                   timeout=20, interval=0.1, message="the last write's event")
        assert "seen.txt" in names and not any(".env" in n for n in names), names
    finally:
        handle.stop()
    with pytest.raises(FileNotFound):
        sandbox.files.watch_dir(f"{W}/secrets")


def test_http_routes_and_signed_urls(server, sandbox):
    with httpx.Client(timeout=30) as http:
        url = sandbox.download_url(f"{W}/main.py", expires_in=60)
        assert http.get(url).text == PROJECT["main.py"]
        assert http.get(sandbox.download_url(f"{W}/.env", expires_in=60)).status_code == 404
        assert http.get(sandbox.download_url(f"{W}/secrets/api.key")).status_code == 404
        assert http.get(sandbox.download_url(f"{W}/config/db.yaml")).status_code == 403
        upload = sandbox.upload_url(f"{W}/main.py", expires_in=60)
        assert http.post(upload, files={"file": ("main.py", b"evil")}).status_code == 403
        assert http.post(sandbox.upload_url(f"{W}/.env"), files={"file": (".env", b"x")}).status_code in (403, 404)
        ok = http.post(sandbox.upload_url(f"{W}/output/up.txt"), files={"file": ("up.txt", b"fine")})
        assert ok.status_code == 200
    assert sandbox.files.read(f"{W}/main.py") == PROJECT["main.py"]
    assert sandbox.files.read(f"{W}/output/up.txt") == "fine"
