"""The reaper ends every sandbox within 1 s of its deadline, also when many fall due together, and
within 1 s of its processes ending by themselves."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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


def _kill_processes(sandbox_id: str) -> None:
    """Every process of the sandbox, killed from the host: the sandbox ends by itself."""
    procs = next(Path("/sys/fs/cgroup").glob(f"pids/sandlot-*/{sandbox_id}/cgroup.procs"))
    for pid in procs.read_text().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ended_reason(api, sandbox_id: str) -> str | None:
    logs = api.get(f"/v2/sandboxes/{sandbox_id}/logs").json()["logs"]
    return next((e["message"] for e in logs if e["message"].startswith("ended")), None)


def test_a_sandbox_that_ends_by_itself_is_reaped_within_a_second(server):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120) as api:
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300})
        assert r.status_code == 201, r.text
        sid = r.json()["sandboxID"]
        _kill_processes(sid)
        ended = time.time()
        while api.get(f"/sandboxes/{sid}").status_code != 404:
            assert time.time() < ended + 1.0, "the reaper did not see the sandbox end"
            time.sleep(0.02)
        assert _ended_reason(api, sid) == "ended: sandbox exited"


def test_a_sandbox_that_ended_while_paused_is_reaped_once_resumed(server):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120) as api:
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300})
        assert r.status_code == 201, r.text
        sid = r.json()["sandboxID"]
        assert api.post(f"/sandboxes/{sid}/pause").status_code == 204
        _kill_processes(sid)  # SIGKILL ends frozen processes too
        time.sleep(0.5)
        assert api.get(f"/sandboxes/{sid}").json()["state"] == "paused"  # not looked after while paused
        assert api.post(f"/sandboxes/{sid}/resume", json={}).status_code == 201
        resumed = time.time()
        while api.get(f"/sandboxes/{sid}").status_code != 404:
            assert time.time() < resumed + 1.0, "the reaper did not see the resumed sandbox had ended"
            time.sleep(0.02)
        assert _ended_reason(api, sid) == "ended: sandbox exited"
