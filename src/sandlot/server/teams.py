"""Teams (E2B's model): every API key belongs to one, and so does every sandbox, created by a key
of that team. A team sees and touches only its own sandboxes; another team's key gets the answer
an unknown id gets (404), so a sandbox's existence is never confirmed to outsiders.

    Caller   who makes a request: key id, team, admin (auth.py resolves it from the API key)
    Teams    the `teams` table: names, quotas (quotas.py enforces them); migrate() adds the team
             columns to a state database made before teams existed

An admin key (the preset SANDLOT_API_KEY, the key made on the first start, keys made with
`sandlot keys create --admin`, and every key that existed before teams) also reads the whole audit
trail and /metrics; it sees other teams' sandboxes no more than any key does. Teams and keys are
managed with the local CLI (`sandlot teams`, `sandlot keys`), which writes the state database the
running server reads.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from .._exceptions import AlreadyExists, InvalidArgument, NotFound, PermissionDenied

DEFAULT_TEAM = "default"  # id and name of the team every key and sandbox from before teams lands in
QUOTAS = ("max_sandboxes", "max_memory_mb", "max_disk_mb")  # None: no limit of the team's own
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    max_sandboxes INTEGER,            -- running at once
    max_memory_mb INTEGER,            -- memory limits of its running and paused sandboxes, summed
    max_disk_mb INTEGER               -- disk limits of its running and paused sandboxes, summed
);
"""


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the API key's id, its team, and whether it is an admin key."""

    key_id: str
    team: str
    admin: bool = False


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    created_at: float
    max_sandboxes: int | None = None
    max_memory_mb: int | None = None
    max_disk_mb: int | None = None

    def quotas(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in QUOTAS}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection) -> None:
    """Create the teams table and add the team columns to api_keys and sandboxes (store.py's
    tables), once. Keys and sandboxes from before land in the default team; those keys could do
    everything, so they stay admin keys."""
    db.execute("BEGIN IMMEDIATE")  # the CLI and the server may open the database at once
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):  # executescript() would commit
            db.execute(statement)
        db.execute("INSERT OR IGNORE INTO teams (id, name, created_at) VALUES (?, ?, ?)",
                   (DEFAULT_TEAM, DEFAULT_TEAM, time.time()))
        keys = _columns(db, "api_keys")
        if "team" not in keys:
            db.execute(f"ALTER TABLE api_keys ADD COLUMN team TEXT NOT NULL DEFAULT '{DEFAULT_TEAM}'")
        if "admin" not in keys:
            db.execute("ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")
            db.execute("UPDATE api_keys SET admin = 1")
        if "team" not in _columns(db, "sandboxes"):
            db.execute(f"ALTER TABLE sandboxes ADD COLUMN team TEXT NOT NULL DEFAULT '{DEFAULT_TEAM}'")
        db.execute("CREATE INDEX IF NOT EXISTS sandboxes_team ON sandboxes(team, state)")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _team(row) -> Team:
    return Team(*row)


def _quota(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidArgument(f"{name} must be a whole number >= 0 (or none), got {value!r}")
    return value


class Teams:
    """The teams of a state database (`Store.teams`)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def create(self, name: str, **quotas: int | None) -> Team:
        if not _NAME.fullmatch(name):
            raise InvalidArgument(f"team names are 1-63 characters of a-z, 0-9, '_', '.', '-' (starting with a "
                                  f"letter or digit), got {name!r}")
        values = {q: _quota(q, quotas.get(q)) for q in QUOTAS}
        team = Team(id="team_" + secrets.token_hex(6), name=name, created_at=time.time(), **values)
        try:
            self.db.execute("INSERT INTO teams (id, name, created_at, max_sandboxes, max_memory_mb, max_disk_mb) "
                            "VALUES (?,?,?,?,?,?)", (team.id, name, team.created_at, *values.values()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"team \"{name}\" already exists") from None
        return team

    def get(self, name_or_id: str) -> Team:
        """A team by name or id, else NotFound."""
        row = self.db.execute("SELECT * FROM teams WHERE name = ? OR id = ? ORDER BY id = ? DESC LIMIT 1",
                              (name_or_id, name_or_id, name_or_id)).fetchone()
        if row is None:
            raise NotFound(f"team \"{name_or_id}\" not found")
        return _team(row)

    def list(self) -> list[Team]:
        return [_team(r) for r in self.db.execute("SELECT * FROM teams ORDER BY created_at")]

    def set_quotas(self, name_or_id: str, **quotas: int | None) -> Team:
        """Set the quotas given (None: no limit); the others stay."""
        team = self.get(name_or_id)
        if unknown := set(quotas) - set(QUOTAS):
            raise InvalidArgument(f"unknown quota: {', '.join(sorted(unknown))}")
        for name, value in quotas.items():
            self.db.execute(f"UPDATE teams SET {name} = ? WHERE id = ?", (_quota(name, value), team.id))
        return self.get(team.id)

    def delete(self, name_or_id: str) -> int:
        """Delete a team that holds no sandbox (running or paused); its keys are revoked. Returns
        how many keys were revoked."""
        team = self.get(name_or_id)
        if team.id == DEFAULT_TEAM:
            raise PermissionDenied("the default team cannot be deleted")
        held = self.db.execute("SELECT COUNT(*) FROM sandboxes WHERE team = ? AND state != 'killed'",
                               (team.id,)).fetchone()[0]
        if held:
            raise PermissionDenied(f"team \"{team.name}\" still has {held} sandbox(es): kill them first")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            revoked = self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE team = ? AND revoked_at IS NULL",
                                      (time.time(), team.id)).rowcount
            self.db.execute("DELETE FROM teams WHERE id = ?", (team.id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return revoked
