"""Durable control-plane state in SQLite: API keys and sandbox records (teams: teams.py, which
adds its columns to both; the audit trail: audit.py).

Every write commits before the caller acts on it, so a server killed at any point restarts knowing
every sandbox it ever started (and can adopt or clean it up).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import teams
from .teams import DEFAULT_TEAM, Caller, Teams

SCHEMA = """
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
# Columns added after the first release, added to older databases at open (JSON where structured):
# stack: {"template": built template, "layers": [digests, bottom first]} the sandbox runs on;
# auto_pause_mode: what a pause on timeout keeps (full | filesystem); pause_mode: what the current
# pause kept; volume_mounts: [{"name", "path"}]; security: the SecurityPolicy fields that differ
# from its defaults (a fork's children and a cold resume run under it); workspace: it has one;
# network: the egress policy and ingress settings (issue 12), NULL for no network.
ADDED_COLUMNS = {
    "stack": "TEXT NOT NULL DEFAULT '{}'",
    "auto_pause_mode": "TEXT NOT NULL DEFAULT 'full'",
    "auto_resume": "INTEGER NOT NULL DEFAULT 0",
    "pause_mode": "TEXT",
    "volume_mounts": "TEXT NOT NULL DEFAULT '[]'",
    "security": "TEXT NOT NULL DEFAULT '{}'",
    "workspace": "INTEGER NOT NULL DEFAULT 0",
    "network": "TEXT",
}
_JSON_COLUMNS = ("metadata", "envs", "limits", "stack", "volume_mounts", "security", "network")


def hash_key(key: str) -> str:
    # API keys are long random strings (or an operator-chosen preset), so a plain digest suffices.
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class SandboxRecord:
    id: str
    template: str
    state: str
    started_at: float
    end_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    access_token: str | None = None
    auto_pause: bool = False
    ended_at: float | None = None
    end_reason: str | None = None
    stack: dict = field(default_factory=dict)
    auto_pause_mode: str = "full"
    auto_resume: bool = False
    pause_mode: str | None = None
    volume_mounts: list = field(default_factory=list)
    security: dict = field(default_factory=dict)
    workspace: bool = False
    team: str = DEFAULT_TEAM  # teams.py
    network: dict | None = None  # {"egress": NetworkPolicy json | None, "public": bool, ...}


@dataclass
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None
    team: str = DEFAULT_TEAM
    admin: bool = False


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(sandboxes)")}
        for name, decl in ADDED_COLUMNS.items():
            if name not in have:
                self.db.execute(f"ALTER TABLE sandboxes ADD COLUMN {name} {decl}")
        teams.migrate(self.db)
        path.chmod(0o600)
        self.teams = Teams(self.db)

    def close(self) -> None:
        self.db.close()

    # ---- API keys ----------------------------------------------------------------------------

    def create_key(self, name: str, key: str | None = None, *, team: str = DEFAULT_TEAM,
                   admin: bool = False) -> tuple[ApiKey, str]:
        """Store a new key (hashed) of `team` (a name or id). Returns the record and the key itself,
        shown once."""
        team_id = self.teams.get(team).id
        key = key or "e2b_" + secrets.token_hex(20)  # E2B-shaped, so every SDK release accepts it
        rec = ApiKey(id="key_" + secrets.token_hex(6), name=name, prefix=key[:8], created_at=time.time(),
                     revoked_at=None, team=team_id, admin=admin)
        self.db.execute("INSERT INTO api_keys (id, name, hash, prefix, created_at, team, admin) VALUES (?,?,?,?,?,?,?)",
                        (rec.id, name, hash_key(key), rec.prefix, rec.created_at, team_id, int(admin)))
        return rec, key

    def list_keys(self) -> list[ApiKey]:
        rows = self.db.execute("SELECT id,name,prefix,created_at,revoked_at,team,admin FROM api_keys "
                               "ORDER BY created_at")
        return [ApiKey(*r[:6], admin=bool(r[6])) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        cur = self.db.execute("UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
                              (time.time(), key_id))
        return cur.rowcount == 1

    def caller(self, key: str) -> Caller | None:
        """Who `key` is, if it is stored, not revoked, and its team exists."""
        row = self.db.execute("SELECT k.id, k.team, k.admin FROM api_keys k JOIN teams t ON t.id = k.team "
                              "WHERE k.hash=? AND k.revoked_at IS NULL", (hash_key(key),)).fetchone()
        return Caller(row[0], row[1], bool(row[2])) if row else None

    def has_keys(self) -> bool:
        return self.db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    # ---- sandboxes ---------------------------------------------------------------------------

    def insert(self, r: SandboxRecord) -> None:
        row = {k: (json.dumps(v) if k in _JSON_COLUMNS else v) for k, v in asdict(r).items()}
        self.db.execute(f"INSERT INTO sandboxes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        tuple(row.values()))

    def update(self, sandbox_id: str, **fields) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        values = (json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items())
        self.db.execute(f"UPDATE sandboxes SET {cols} WHERE id=?", (*values, sandbox_id))

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        row = self._select("WHERE id=?", (sandbox_id,)).fetchone()
        return _record(row) if row else None

    def live(self) -> list[SandboxRecord]:
        return [_record(r) for r in self._select("WHERE state != 'killed' ORDER BY started_at")]

    def _select(self, where: str, args: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(f"SELECT {', '.join(_FIELDS)} FROM sandboxes {where}", args)


_FIELDS = [f.name for f in fields(SandboxRecord)]


def _record(row) -> SandboxRecord:
    values = {k: (json.loads(v) if k in _JSON_COLUMNS and v is not None else v) for k, v in zip(_FIELDS, row)}
    values["auto_pause"] = bool(values["auto_pause"])
    values["auto_resume"] = bool(values["auto_resume"])
    return SandboxRecord(**values)
