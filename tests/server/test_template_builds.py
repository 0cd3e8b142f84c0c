"""A server builds a template nobody built yet in a worker process: a create never waits on the
build (503 with its progress, at once, and no sandbox is made for it later), stopping the server
stops the build at once and leaves nothing working or mounted, and the next build starts over
cleanly. Uses a private template store holding the shared `base` only, so `code-interpreter` must
be built; each test stops the build early (a whole one takes minutes)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from support import TEMPLATE_CACHE, start_server

NO_POOLS = {"SANDLOT_POOL_TEMPLATES": ""}


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    (home / "templates").mkdir(parents=True)
    (home / "templates" / "base").symlink_to(TEMPLATE_CACHE / "base")
    (home / "cache").symlink_to(TEMPLATE_CACHE.parent / "cache")  # downloads are shared as on a real host
    return home


def _create(server) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/sandboxes", json={"templateID": "code-interpreter", "timeout": 60},
                      headers={"X-API-KEY": server.api_key}, timeout=60)


def _working_on(home: Path) -> list[str]:
    """Processes whose command line names `home` (the build worker, and what it runs)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(home) in args:
            found.append(args)
    return found


def _mounted_under(home: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(home) in line.split()[4]]


def _building(server, step_past: tuple[str, ...] = ("starting",), timeout: float = 120) -> dict:
    """Create until the server reports the build past `step_past`; the last 503 body."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        r = _create(server)
        assert time.monotonic() - started < 10, "a create waited on the build"
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"].isdigit()
        body = r.json()
        if body["step"] not in step_past or time.monotonic() > deadline:
            return body
        time.sleep(1)


def _stop(server) -> float:
    started = time.monotonic()
    server.stop()
    log = server.log.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
    return time.monotonic() - started


def test_a_create_during_a_build_is_answered_at_once_and_stopping_is_prompt(home):
    server = start_server(home, pool_size=0, extra_env=NO_POOLS)
    try:
        body = _building(server)
        assert body["code"] == 503 and body["template"] == "code-interpreter" and 0 <= body["progress"] < 100
        assert "being built" in body["message"] and "retry" in body["message"]
        assert any("sandlot.templates.worker" in p for p in _working_on(home))
        listed = httpx.get(f"{server.url}/v2/sandboxes", headers={"X-API-KEY": server.api_key}, timeout=30)
        assert listed.json() == [], "a refused create must never leave a sandbox"
    finally:
        seconds = _stop(server)
    assert seconds < 10, f"stopping during a build took {seconds:.1f}s"
    assert _working_on(home) == [] and _mounted_under(home) == []
    assert not (home / "templates" / "code-interpreter").exists()


def test_an_interrupted_build_starts_over_cleanly(home):
    server = start_server(home, pool_size=0, extra_env=NO_POOLS)
    try:
        _building(server)
    finally:
        _stop(server)
    [partial] = (home / "templates").glob(".new-code-interpreter-*")  # left for the next build
    server = start_server(home, pool_size=0, extra_env=NO_POOLS)
    try:
        body = _building(server, step_past=("starting", "removing what an interrupted build left"), timeout=300)
        assert not partial.exists(), body
        [fresh] = (home / "templates").glob(".new-code-interpreter-*")
        assert fresh != partial and (fresh / "rootfs").is_dir()
    finally:
        _stop(server)
    assert _working_on(home) == [] and _mounted_under(home) == []
