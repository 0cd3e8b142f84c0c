"""Host admission (server/quotas.py): a create or resume whose memory limit would take the
sandboxes' total past what the host may grant is refused with a clear 429, and nothing of it is
made. By default that total is host RAM less a reserve, so sandboxes that each stay within their
own limit cannot together run the host out of memory."""

from __future__ import annotations

import os

import httpx
import pytest

from support import start_server

HOST_MB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def _made(home) -> set[str]:
    return {p.name for p in (home / "sandboxes").glob("*")}


@pytest.fixture
def server(tmp_path):
    servers = []

    def start(**env):
        srv = start_server(tmp_path / f"home{len(servers)}", pool_size=0, extra_env=env)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
        assert "Traceback" not in srv.log.read_text()


def test_by_default_limits_past_the_hosts_memory_are_refused(server):
    srv = server()
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=60) as http:
        before = _made(srv.home)
        r = http.post("/v2/sandboxes", json={"templateID": "base", "limits": {"memory_mb": HOST_MB}})
        assert r.status_code == 429 and r.headers["Should-Retry"] == "false", r.text
        message = r.json()["message"]
        assert "the host has no room for this sandbox" in message and "SANDLOT_MEMORY_OVERCOMMIT=1" in message
        assert _made(srv.home) == before and http.get("/v2/sandboxes").json() == []  # nothing half-made
        ok = http.post("/v2/sandboxes", json={"templateID": "base", "limits": {"memory_mb": 256}})
        assert ok.status_code == 201, ok.text
        assert http.delete(f"/sandboxes/{ok.json()['sandboxID']}").status_code == 204


def test_a_full_host_refuses_creates_and_resumes_until_room_is_made(server):
    # room for two 512 MiB sandboxes (and a bit), whatever this machine's memory
    from e2b import RateLimitException, Sandbox

    srv = server(SANDLOT_HOST_MEMORY_RESERVE_MB=str(HOST_MB - 1100))
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=60) as http:
        def create(memory_mb: int = 512) -> httpx.Response:
            return http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120,
                                                    "limits": {"memory_mb": memory_mb}})

        first, second = create().json()["sandboxID"], create().json()["sandboxID"]
        made = _made(srv.home)
        refused = create()
        assert refused.status_code == 429 and "1100 MiB they may have" in refused.json()["message"], refused.text
        with pytest.raises(RateLimitException, match="no room"):  # the official SDK asks 512 MiB too
            Sandbox.create(timeout=60, api_key=srv.api_key, api_url=srv.url, sandbox_url=srv.url)
        assert create(64).status_code == 201  # what still fits is made (1088 of 1100 MiB)
        assert _made(srv.home) - made and len(http.get("/v2/sandboxes").json()) == 3
        # a paused sandbox keeps its memory (frozen): pausing makes no room...
        assert http.post(f"/sandboxes/{first}/pause").status_code == 204
        assert create().status_code == 429
        # ...killing does, and the paused one resumes
        assert http.delete(f"/sandboxes/{second}").status_code == 204
        assert http.post(f"/sandboxes/{first}/resume", json={"timeout": 60}).status_code == 201
        assert create(12).status_code == 400  # below the smallest limit: a bad request, not a full host
        for s in http.get("/v2/sandboxes").json():
            assert http.delete(f"/sandboxes/{s['sandboxID']}").status_code == 204


def test_a_sandbox_paused_with_its_files_only_makes_room_until_it_resumes(server):
    """Its processes end, so its memory is free for others; resuming needs that room again, and a
    full pause keeps it. (Admission keeps each sandbox's holding between creates, service.py
    _holdings: each of these changes must be seen.)"""
    srv = server(SANDLOT_HOST_MEMORY_RESERVE_MB=str(HOST_MB - 1100))
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=60) as http:
        def create() -> httpx.Response:
            return http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120,
                                                    "limits": {"memory_mb": 512}})

        first, second = create().json()["sandboxID"], create().json()["sandboxID"]
        assert create().status_code == 429
        assert http.post(f"/sandboxes/{first}/pause", json={"memory": False}).status_code == 204
        third = create()
        assert third.status_code == 201, third.text  # the files-only pause freed its 512 MiB
        refused = http.post(f"/sandboxes/{first}/resume", json={"timeout": 60})
        assert refused.status_code == 429, refused.text  # ...which it needs again to run
        assert http.delete(f"/sandboxes/{third.json()['sandboxID']}").status_code == 204
        assert http.post(f"/sandboxes/{first}/resume", json={"timeout": 60}).status_code == 201
        assert create().status_code == 429  # running again, it holds its memory
        assert http.post(f"/sandboxes/{second}/pause").status_code == 204  # full: still held
        assert create().status_code == 429
        for s in http.get("/v2/sandboxes").json():
            assert http.delete(f"/sandboxes/{s['sandboxID']}").status_code == 204


def test_admission_can_be_turned_off(server):
    srv = server(SANDLOT_MEMORY_OVERCOMMIT="0")
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=60) as http:
        r = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, "limits": {"memory_mb": 2 * HOST_MB}})
        assert r.status_code == 201, r.text
        assert http.delete(f"/sandboxes/{r.json()['sandboxID']}").status_code == 204


def test_concurrent_creates_cannot_pass_the_same_room_twice(server):
    from concurrent.futures import ThreadPoolExecutor

    srv = server(SANDLOT_HOST_MEMORY_RESERVE_MB=str(HOST_MB - 1100))  # room for two of 512 MiB
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120) as http:
        def create(_) -> int:
            return http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120,
                                                    "limits": {"memory_mb": 512}}).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = sorted(pool.map(create, range(6)))
        assert statuses == [201, 201, 429, 429, 429, 429], statuses
        listed = http.get("/v2/sandboxes").json()
        assert len(listed) == 2 and len(_made(srv.home)) == 2
        for s in listed:
            assert http.delete(f"/sandboxes/{s['sandboxID']}").status_code == 204


def _free_mb(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize >> 20


def test_disks_past_the_hosts_free_space_are_refused_and_written_bytes_count_once(server, tmp_path):
    # room for 3000 MiB of sandbox disks, whatever this machine's free space (the margins below leave
    # ~400 MiB for other writers on the same disk while the test runs)
    srv = server(SANDLOT_HOST_DISK_RESERVE_MB=str(_free_mb(tmp_path) - 3000))
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120) as http:
        def create(disk_mb: int = 2048) -> httpx.Response:
            return http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120,
                                                    "limits": {"memory_mb": 128, "disk_mb": disk_mb}})

        first = create()
        assert first.status_code == 201, first.text
        made = _made(srv.home)
        refused = create()
        assert refused.status_code == 429 and refused.headers["Should-Retry"] == "false", refused.text
        message = refused.json()["message"]
        assert "the host has no disk for this sandbox" in message and "SANDLOT_DISK_OVERCOMMIT=1" in message
        assert _made(srv.home) == made  # nothing half-made
        # 1000 MiB written in the first one: the host's free space shrinks by it, and so does what the
        # first may still write; counted twice, a 512 MiB disk would no longer fit (2048 + 512 > ~2000)
        from e2b import Sandbox
        sbx = Sandbox.connect(first.json()["sandboxID"], api_key=srv.api_key, api_url=srv.url, sandbox_url=srv.url)
        sbx.commands.run("head -c 1000M /dev/zero > /home/user/big", timeout=120)
        assert create(512).status_code == 201
        # a volume is a disk too: its size counts until it is written
        vol = http.post("/volumes", json={"name": "big", "sizeMB": 4096})
        assert vol.status_code == 429 and "no disk" in vol.json()["message"], vol.text
        for s in http.get("/v2/sandboxes").json():
            assert http.delete(f"/sandboxes/{s['sandboxID']}").status_code == 204
        assert create().status_code == 201  # room again
        for s in http.get("/v2/sandboxes").json():
            assert http.delete(f"/sandboxes/{s['sandboxID']}").status_code == 204


def test_disk_admission_can_be_turned_off(server):
    srv = server(SANDLOT_DISK_OVERCOMMIT="0", SANDLOT_HOST_DISK_RESERVE_MB=str(10**9))
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=60) as http:
        r = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
        assert r.status_code == 201, r.text
        assert http.delete(f"/sandboxes/{r.json()['sandboxID']}").status_code == 204
