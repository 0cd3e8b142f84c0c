"""Which sandbox a request reaches, and how a sandbox that is gone answers (docs/e2b.md §1.3, §3.13)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from e2b import AsyncSandbox, SandboxNotRunningException

GONE = {"message": "The sandbox was not found", "code": 502}


@pytest.fixture
def doomed(envd):
    """A sandbox of its own (same agent) that the test kills."""
    envd.add("sbxdoomed", "token-doomed")
    yield envd.connect("sbxdoomed")
    envd.lookup.sandboxes.pop("sbxdoomed", None)


def test_unknown_sandbox_is_502_everywhere(envd):
    headers = {"E2b-Sandbox-Id": "sbxnever", "X-Access-Token": "x"}
    for method, path in [("GET", "/health"), ("GET", "/envs"), ("GET", "/files?path=/etc/hostname"),
                         ("POST", "/files?path=/tmp/x"), ("POST", "/process.Process/List"),
                         ("POST", "/filesystem.Filesystem/Stat")]:
        r = httpx.request(method, envd.url + path, headers=headers, json={} if "." in path else None)
        assert (r.status_code, r.json()) == (502, {"sandboxId": "sbxnever", **GONE}), path


def test_killed_sandbox(envd, doomed):
    assert doomed.is_running()
    envd.kill("sbxdoomed")
    assert doomed.is_running() is False
    with pytest.raises(SandboxNotRunningException):
        doomed.commands.run("true")
    with pytest.raises(SandboxNotRunningException):
        doomed.files.read("/etc/hostname")
    with pytest.raises(SandboxNotRunningException):
        doomed.files.list("/")


def test_paused_sandbox_says_so_to_its_owner_only(envd, doomed):
    envd.lookup.paused["sbxdoomed"] = envd.kill("sbxdoomed")  # what a pause does to the front door
    try:
        owner = {"E2b-Sandbox-Id": "sbxdoomed", "X-Access-Token": "token-doomed"}
        for method, path in [("GET", "/health"), ("GET", "/files?path=/etc/hostname"),
                             ("POST", "/process.Process/List")]:
            r = httpx.request(method, envd.url + path, headers=owner, json={} if "." in path else None)
            body = r.json()
            assert (r.status_code, body["code"], body["state"]) == (502, 502, "paused"), path
            assert "sbxdoomed is paused" in body["message"] and "resume" in body["message"]
            assert "was not found" in body["message"]  # what the e2b SDK reads as "not running"
        # without its token a caller learns nothing more than for an unknown sandbox
        r = httpx.get(envd.url + "/health", headers={"E2b-Sandbox-Id": "sbxdoomed", "X-Access-Token": "guess"})
        assert (r.status_code, r.json()) == (502, {"sandboxId": "sbxdoomed", **GONE})
        # the official SDK behaves as against E2B
        assert doomed.is_running() is False
        with pytest.raises(SandboxNotRunningException, match="paused"):
            doomed.commands.run("true")
        with pytest.raises(SandboxNotRunningException):
            doomed.files.read("/etc/hostname")
    finally:
        envd.lookup.paused.pop("sbxdoomed", None)


def test_open_streams_end_when_the_sandbox_is_killed(envd, doomed):
    handle = doomed.commands.run("sleep 60", background=True, timeout=0)
    watcher = doomed.files.watch_dir("/tmp")
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(_raised(handle.wait)))
    waiter.start()
    time.sleep(0.3)
    envd.kill("sbxdoomed")
    waiter.join(10)
    assert not waiter.is_alive(), "the command stream did not end"
    assert isinstance(outcome[0], SandboxNotRunningException), outcome
    with pytest.raises(SandboxNotRunningException):
        watcher.get_new_events()


async def test_async_watch_ends_when_the_sandbox_is_killed(envd, doomed):
    sandbox = await envd.connect("sbxdoomed", AsyncSandbox)
    exits = []
    await sandbox.files.watch_dir("/tmp", on_event=lambda e: None, on_exit=exits.append, timeout=0)
    envd.kill("sbxdoomed")
    deadline = time.monotonic() + 10
    while not exits:
        assert time.monotonic() < deadline, "the watch stream did not end"
        await asyncio.sleep(0.05)
    assert isinstance(exits[0], SandboxNotRunningException), exits


def test_requests_without_routing_headers(envd, sandbox):
    # Only the main sandbox runs here: it answers requests that name none.
    assert list(envd.lookup.sandboxes) == ["sbxmain"]
    assert httpx.get(f"{envd.url}/health").status_code == 204
    assert httpx.get(f"{envd.url}/envs", headers={"X-Access-Token": "token-main"}).json()["SANDBOX_WIDE"] == "yes"
    envd.add("sbxother", "token-other")
    try:
        # Two running: the access token tells which one is meant; one that fits none is refused,
        # and a request any sandbox would take (/health) is ambiguous.
        assert httpx.get(f"{envd.url}/envs", headers={"X-Access-Token": "token-other"}).status_code == 200
        r = httpx.get(f"{envd.url}/envs", headers={"X-Access-Token": "nobody's"})
        assert r.status_code == 401 and r.json()["code"] == 401
        assert httpx.get(f"{envd.url}/health").status_code == 400
        assert httpx.get(sandbox.download_url("/etc/hostname")).status_code == 200
    finally:
        envd.lookup.sandboxes.pop("sbxother")


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test inspects it
        return e
    return None
