"""The reaper ends every sandbox within 1 s of its deadline, also when many fall due together, and
within 1 s of its processes ending by themselves.

When a sandbox ended is read from the server's own log of it (its "ended" entry), not from when a
client polling it first saw it gone: under CI's load a pass of requests over 16 sandboxes takes
most of a second by itself, and was measured as the reaper's delay."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
from support import wait_until


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
        wait_until(lambda: all(api.get(f"/sandboxes/{sid}").status_code == 404 for sid in ids),
                   timeout=30, message="every sandbox to end")
        ended = {sid: _ended(api, sid) for sid in ids}
        assert {reason for reason, _ in ended.values()} == {"ended: timeout"}, ended
        late = {sid: round(t - deadline, 2) for sid, (_, t) in ended.items() if t > deadline + 1.0}
        assert not late, late


def _kill_processes(sandbox_id: str) -> None:
    """Every process of the sandbox, killed from the host: the sandbox ends by itself."""
    procs = next(Path("/sys/fs/cgroup").glob(f"pids/sandlot-*/{sandbox_id}/cgroup.procs"))
    for pid in procs.read_text().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ended(api, sandbox_id: str) -> tuple[str, float]:
    """The sandbox's "ended" log entry: its message, and when the server wrote it (its clock is ours)."""
    logs = api.get(f"/v2/sandboxes/{sandbox_id}/logs").json()["logs"]
    [entry] = [e for e in logs if e["message"].startswith("ended")]
    return entry["message"], datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()


def test_a_sandbox_that_ends_by_itself_is_reaped_within_a_second(server):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120) as api:
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300})
        assert r.status_code == 201, r.text
        sid = r.json()["sandboxID"]
        _kill_processes(sid)
        exited = time.time()
        wait_until(lambda: api.get(f"/sandboxes/{sid}").status_code == 404, timeout=30, message="the sandbox to end")
        reason, ended = _ended(api, sid)
        assert reason == "ended: sandbox exited"
        assert ended < exited + 1.0, f"the reaper saw the sandbox end {ended - exited:.2f}s after it did"


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
        wait_until(lambda: api.get(f"/sandboxes/{sid}").status_code == 404, timeout=30, message="the sandbox to end")
        reason, ended = _ended(api, sid)
        assert reason == "ended: sandbox exited"
        assert ended < resumed + 1.0, f"the reaper saw the resumed sandbox had ended {ended - resumed:.2f}s after"
