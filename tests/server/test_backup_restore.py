"""docs/operations.md's backup and restore, followed step by step: an online copy of state.db taken
while the server runs, restored into a fresh state directory, brings the keys back and no sandbox
(sandboxes are processes: they are marked lost, not resurrected)."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx

from support import leftovers, start_server

KEY = re.compile(r"e2b_[0-9a-f]{40}")


def test_online_backup_restores_keys_not_sandboxes(tmp_path):
    first = start_server(tmp_path / "first", pool_size=0, api_key=None, extra_env={"SANDLOT_POOL_TEMPLATES": ""})
    try:
        [key] = KEY.findall(first.log.read_text())
        with httpx.Client(base_url=first.url, headers={"X-API-KEY": key}, timeout=60) as api:
            sid = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 600}).json()["sandboxID"]
            backup = tmp_path / "backup.db"
            subprocess.run(["sqlite3", str(first.home / "state.db"), f".backup '{backup}'"], check=True, timeout=60)
            api.delete(f"/sandboxes/{sid}")
    finally:
        first.stop()
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(backup, restored / "state.db")
    second = start_server(restored, pool_size=0, api_key=None, extra_env={"SANDLOT_POOL_TEMPLATES": ""})
    try:
        assert not KEY.findall(second.log.read_text()), "a restored server must not make a new first key"
        with httpx.Client(base_url=second.url, headers={"X-API-KEY": key}, timeout=60) as api:
            assert api.get("/v2/sandboxes").json() == []  # the backup's running sandbox is not running here
            assert api.get(f"/sandboxes/{sid}").status_code == 404
            assert api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60}).status_code == 201
    finally:
        second.stop()
    assert not leftovers(first.home) and not leftovers(restored)
