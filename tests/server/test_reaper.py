"""The reaper ends every sandbox within 1 s of its deadline, also when many fall due together."""

from __future__ import annotations

import time

import httpx


def test_many_sandboxes_due_together_all_end_within_a_second(server):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120) as api:
        ids = []
        for _ in range(16):
            r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 30})
            assert r.status_code == 201, r.text
            ids.append(r.json()["sandboxID"])
        for sid in ids:  # the same deadline for all of them
            assert api.post(f"/sandboxes/{sid}/timeout", json={"timeout": 1}).status_code == 204
        deadline = time.time() + 1
        gone: dict[str, float] = {}
        while len(gone) < len(ids) and time.time() < deadline + 5:
            for sid in set(ids) - set(gone):
                if api.get(f"/sandboxes/{sid}").status_code == 404:
                    gone[sid] = time.time()
            time.sleep(0.05)
        assert len(gone) == len(ids)
        late = {sid: round(t - deadline, 2) for sid, t in gone.items() if t > deadline + 1.0}
        assert not late, late
