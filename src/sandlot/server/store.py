"""Durable control-plane state in SQLite: API keys and sandbox records.

Every write commits before the caller acts on it, so a server killed at any point restarts knowing
every sandbox it ever started (and can adopt or clean it up).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    end_reason TEXT,
    network TEXT                      -- JSON: egress policy and ingress settings (issue 12)
);
CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state, started_at);
"""


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
    network: dict | None = None  # {"egress": NetworkPolicy json | None, "public": bool, ...}


@dataclass
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if "network" not in {row[1] for row in self.db.execute("PRAGMA table_info(sandboxes)")}:
            self.db.execute("ALTER TABLE sandboxes ADD COLUMN network TEXT")  # a state dir from before it
        path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    # ---- API keys ----------------------------------------------------------------------------

    def create_key(self, name: str, key: str | None = None) -> tuple[ApiKey, str]:
        """Store a new key (hashed). Returns the record and the key itself, shown once."""
        key = key or "e2b_" + secrets.token_hex(20)  # E2B-shaped, so every SDK release accepts it
        rec = ApiKey(id="key_" + secrets.token_hex(6), name=name, prefix=key[:8], created_at=time.time(),
                     revoked_at=None)
        self.db.execute("INSERT INTO api_keys VALUES (?,?,?,?,?,NULL)",
                        (rec.id, name, hash_key(key), rec.prefix, rec.created_at))
        return rec, key

    def list_keys(self) -> list[ApiKey]:
        rows = self.db.execute("SELECT id,name,prefix,created_at,revoked_at FROM api_keys ORDER BY created_at")
        return [ApiKey(*r) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        cur = self.db.execute("UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
                              (time.time(), key_id))
        return cur.rowcount == 1

    def key_id(self, key: str) -> str | None:
        """The id of `key` if it is stored and not revoked."""
        row = self.db.execute("SELECT id FROM api_keys WHERE hash=? AND revoked_at IS NULL",
                              (hash_key(key),)).fetchone()
        return row[0] if row else None

    def has_keys(self) -> bool:
        return self.db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    # ---- sandboxes ---------------------------------------------------------------------------

    def insert(self, r: SandboxRecord) -> None:
        self.db.execute(
            "INSERT INTO sandboxes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.id, r.template, r.state, r.started_at, r.end_at, json.dumps(r.metadata), json.dumps(r.envs),
             json.dumps(r.limits), r.access_token, int(r.auto_pause), r.ended_at, r.end_reason,
             None if r.network is None else json.dumps(r.network)))

    def update(self, sandbox_id: str, **fields) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE sandboxes SET {cols} WHERE id=?", (*fields.values(), sandbox_id))

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        row = self.db.execute("SELECT * FROM sandboxes WHERE id=?", (sandbox_id,)).fetchone()
        return _record(row) if row else None

    def live(self) -> list[SandboxRecord]:
        rows = self.db.execute("SELECT * FROM sandboxes WHERE state != 'killed' ORDER BY started_at")
        return [_record(r) for r in rows]


def _record(row) -> SandboxRecord:
    return SandboxRecord(id=row[0], template=row[1], state=row[2], started_at=row[3], end_at=row[4],
                         metadata=json.loads(row[5]), envs=json.loads(row[6]), limits=json.loads(row[7]),
                         access_token=row[8], auto_pause=bool(row[9]), ended_at=row[10], end_reason=row[11],
                         network=json.loads(row[12]) if len(row) > 12 and row[12] else None)
