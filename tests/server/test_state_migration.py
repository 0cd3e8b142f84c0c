"""A state database made before teams existed keeps working: its keys and sandboxes land in the
default team, its keys stay admin keys (they could do everything before), and a server started on
it serves the old key as before."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time

import httpx
import pytest

from sandlot.server.store import Store
from sandlot.server.teams import DEFAULT_TEAM
from support import server_cmd, start_server

# The schema of the state database as sandlot wrote it before teams (store.py at main 7813cf6),
# frozen here: this is what an existing install has on disk.
MAIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    template TEXT NOT NULL,
    state TEXT NOT NULL,              -- running | paused | killed
    started_at REAL NOT NULL,
    end_at REAL NOT NULL,
    metadata TEXT NOT NULL,
    envs TEXT NOT NULL,
    limits TEXT NOT NULL,
    access_token TEXT,
    auto_pause INTEGER NOT NULL DEFAULT 0,
    ended_at REAL,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state, started_at);
"""
OLD_KEY = "e2b_" + "0123456789" * 4
LIMITS = {"memory_mb": 512, "cpu_count": 1.0, "pids": 512, "disk_mb": 2048}


def old_database(path) -> None:
    """A state database as the server before teams left it: a key, an ended and a 'running' sandbox."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(MAIN_SCHEMA)
    now = time.time()
    db.execute("INSERT INTO api_keys VALUES (?,?,?,?,?,NULL)",
               ("key_old000000001", "first key", hashlib.sha256(OLD_KEY.encode()).hexdigest(), OLD_KEY[:8], now - 100))
    for sid, state in (("iendedbeforeteams000", "killed"), ("irunningbeforeteams0", "running")):
        db.execute("INSERT INTO sandboxes VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (sid, "base", state, now - 50, now + 3600, json.dumps({"k": "v"}), "{}", json.dumps(LIMITS),
                    "tok", 0, now - 10 if state == "killed" else None, "killed" if state == "killed" else None))
    db.close()


def test_store_migrates_an_old_database_once(tmp_path):
    old_database(tmp_path / "state.db")
    for _ in range(2):  # opening it again changes nothing
        store = Store(tmp_path / "state.db")
        [key] = [k for k in store.list_keys() if k.revoked_at is None]
        assert (key.id, key.team, key.admin) == ("key_old000000001", DEFAULT_TEAM, True)
        caller = store.caller(OLD_KEY)
        assert caller is not None and (caller.team, caller.admin) == (DEFAULT_TEAM, True)
        assert {r.id: r.team for r in store.live()} == {"irunningbeforeteams0": DEFAULT_TEAM}
        assert store.get("iendedbeforeteams000").metadata == {"k": "v"}
        assert [t.id for t in store.teams.list()] == [DEFAULT_TEAM]
        # keys made from now on are no admin keys unless asked
        rec, new = store.create_key("later")
        assert (rec.team, rec.admin) == (DEFAULT_TEAM, False) and not store.caller(new).admin
        store.revoke_key(rec.id)
        store.close()


@pytest.fixture
def old_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    old_database(home / "state.db")
    return home


def test_a_server_on_an_old_database_serves_its_key(old_home):
    srv = start_server(old_home, pool_size=0, api_key=None)  # as an install with a stored key only
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-KEY": OLD_KEY}, timeout=60) as http:
            assert http.get("/v2/sandboxes").json() == []  # the 'running' one did not survive: cleaned up
            assert http.get("/metrics").status_code == 200  # an admin key, as every key was
            r = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
            assert r.status_code == 201, r.text
            sid = r.json()["sandboxID"]
            assert [s["sandboxID"] for s in http.get("/v2/sandboxes").json()] == [sid]
            assert http.delete(f"/sandboxes/{sid}").status_code == 204
            audit = http.get("/audit", params={"action": "sandbox."}).json()["entries"]
            assert [(e["action"], e["team"], e["key"]) for e in audit][:2] == [
                ("sandbox.kill", DEFAULT_TEAM, "key_old000000001"), ("sandbox.create", DEFAULT_TEAM, "key_old000000001")]
        listed = subprocess.run([*server_cmd(), "keys", "list", "--json", "--home", str(old_home)], capture_output=True,
                                text=True, timeout=60)
        [key] = json.loads(listed.stdout)
        assert (key["id"], key["team"], key["admin"]) == ("key_old000000001", DEFAULT_TEAM, True)
    finally:
        srv.stop()
    store = Store(old_home / "state.db")
    try:
        lost = store.get("irunningbeforeteams0")
        assert (lost.state, lost.end_reason, lost.team) == ("killed", "lost on restart", DEFAULT_TEAM)
    finally:
        store.close()
