"""Lifecycle requests that cross: a kill, pause or resume arriving while another pause or resume waits
for the freezer. Each answers as if it came first or second (never a 500), and the sandbox ends in
one consistent state."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

ATTEMPTS = 8  # sent together, the second request lands inside the first's freeze most times


@contextlib.asynccontextmanager
async def two_clients(server):
    """Two connections, so the two requests of a pair reach the server at the same moment."""
    headers = {"X-API-KEY": server.api_key}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as a, \
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as b:
        yield a, b


async def _create(a, b) -> str:
    r = await a.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120})
    assert r.status_code == 201, r.text
    sid = r.json()["sandboxID"]
    for c in (a, b):  # both connections open and warm
        assert (await c.get(f"/sandboxes/{sid}")).status_code == 200
    return sid


async def test_kill_during_pause_or_resume(server):
    async with two_clients(server) as (a, b):
        await _kill_during_pause_or_resume(a, b)


async def _kill_during_pause_or_resume(a, b):
    for attempt in range(ATTEMPTS):
        sid = await _create(a, b)
        if attempt % 2:  # resume racing a kill
            assert (await a.post(f"/sandboxes/{sid}/pause")).status_code == 204
            change, killed = await asyncio.gather(a.post(f"/sandboxes/{sid}/resume", json={"timeout": 60}),
                                                  b.delete(f"/sandboxes/{sid}"))
            assert change.status_code in (201, 404), change.text
        else:
            change, killed = await asyncio.gather(a.post(f"/sandboxes/{sid}/pause"), b.delete(f"/sandboxes/{sid}"))
            assert change.status_code in (204, 404), change.text
        assert killed.status_code == 204, killed.text
        assert (await a.get(f"/sandboxes/{sid}")).status_code == 404
        listed = (await a.get("/v2/sandboxes", params={"state": "running,paused"})).json()
        assert sid not in {s["sandboxID"] for s in listed}


async def test_two_pauses_or_resumes_at_once(server):
    async with two_clients(server) as (a, b):
        await _two_at_once(a, b)


async def _two_at_once(a, b):
    for _ in range(ATTEMPTS // 2):
        sid = await _create(a, b)
        answers = await asyncio.gather(a.post(f"/sandboxes/{sid}/pause"), b.post(f"/sandboxes/{sid}/pause"))
        assert sorted(r.status_code for r in answers) == [204, 409], [r.text for r in answers]
        assert (await a.get(f"/sandboxes/{sid}")).json()["state"] == "paused"
        answers = await asyncio.gather(a.post(f"/sandboxes/{sid}/resume", json={"timeout": 60}),
                                       b.post(f"/sandboxes/{sid}/resume", json={"timeout": 60}))
        assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
        assert (await a.get(f"/sandboxes/{sid}")).json()["state"] == "running"
        assert (await a.delete(f"/sandboxes/{sid}")).status_code == 204
