"""The audit trail: who did what to which sandbox, and what came of it, in the state database.

Rows come from three places, never from the handlers themselves:

    observe.py   every request, once, as it ends: `AuditLog.request()` decides from its route (the
                 tables below) whether and as what it is recorded; handlers only add details
                 (`request_info.note(path=...)`)
    events.py    what no request did: timeouts, auto-pauses, sandboxes that exited, server shutdown
    denials.py   file operations the permission filesystem denied a sandbox's processes (file.denied)
    the CLI      key and team changes (`sandlot keys`, `sandlot teams` write the database directly)

Recorded: every control-plane request that changes something (create, connect, kill, pause,
resume, timeout, packages, and any such route added later), the sandbox traffic that acts
(process start, file write/remove/move/mkdir, signed-URL use, code runs, context changes), and
every refusal: a missing or wrong key, token or signature (401/403), and any 404 on a
control-plane route, another team's sandbox and an unknown one alike (a team reading its own trail
cannot tell them apart; an admin sees `foreign_team`). Never stored: keys, tokens, signatures,
command lines, environments, file contents (a row holds a path, a template, a reason).

Cost on the hot path: `record()` appends a tuple to a deque; a writer thread with its own SQLite
connection commits what piled up every FLUSH_INTERVAL, in one transaction. Bounds: rows older than
SANDLOT_AUDIT_RETENTION_DAYS go, and each team (and the bucket of requests no team made) keeps its
newest SANDLOT_AUDIT_MAX_ROWS, so one team's flood of refused requests cannot push out another's
history; at most MAX_PENDING rows wait in memory (past it they are dropped, counted and logged).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.routing import Mount
from starlette.types import Scope

from .auth import Access, access_of
from .logs import RateLimit
from .request_info import RequestInfo, route_template

log = logging.getLogger("sandlot.audit")
log.addFilter(RateLimit())  # a database that stays locked or full would log every second

FLUSH_INTERVAL = 0.25  # seconds a row may wait in memory
MAX_PENDING = 100_000
PRUNE_INTERVAL = 60.0
PRUNE_AFTER_ROWS = 10_000  # or sooner, once this many were written since the last prune
MAX_DETAIL_TEXT = 1024  # characters of one detail value (a path)
SYSTEM = "system"  # the key id of what the server did by itself (a timeout)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: cursors stay valid across pruning
    time REAL NOT NULL,                     -- unix seconds, when the request arrived
    team TEXT,                              -- NULL: no team (no valid key)
    key_id TEXT,                            -- NULL: a sandbox's token or signature; 'system'; 'local-cli'
    sandbox TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,                  -- ok | denied | not_found | refused | failed | abandoned
    status INTEGER,                         -- the HTTP status answered
    detail TEXT,                            -- a JSON object of non-secret details, or NULL
    foreign_team TEXT                       -- the team owning what a refused request named (admins only)
);
CREATE INDEX IF NOT EXISTS audit_team ON audit(team, id);
CREATE INDEX IF NOT EXISTS audit_sandbox ON audit(sandbox, id);
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
"""
_INSERT = ("INSERT INTO audit (time, team, key_id, sandbox, action, outcome, status, detail, foreign_team) "
           "VALUES (?,?,?,?,?,?,?,?,?)")

_SANDBOX = "/sandboxes/{sandbox_id}"
_CODEBASE = "/codebases/{codebase_id}"
# control-plane routes: what a change is called (one not named here is "METHOD /route")
CONTROL_ACTIONS = {
    ("POST", "/sandboxes"): "sandbox.create", ("POST", "/v2/sandboxes"): "sandbox.create",
    ("DELETE", _SANDBOX): "sandbox.kill",
    ("POST", _SANDBOX + "/timeout"): "sandbox.set_timeout",
    ("POST", _SANDBOX + "/connect"): "sandbox.connect", ("POST", "/v2" + _SANDBOX + "/connect"): "sandbox.connect",
    ("POST", _SANDBOX + "/pause"): "sandbox.pause",
    ("POST", _SANDBOX + "/resume"): "sandbox.resume",
    ("POST", _SANDBOX + "/packages"): "packages.install",
    ("POST", _SANDBOX + "/packages/uninstall"): "packages.uninstall",
    ("POST", _SANDBOX + "/sessions"): "session.create",
    ("DELETE", _SANDBOX + "/sessions/{session_id}"): "session.delete",
    ("POST", _SANDBOX + "/sessions/{session_id}/exec"): "session.exec",
    ("PUT", _SANDBOX + "/permissions"): "permissions.set",
    ("POST", _SANDBOX + "/workspace/commit"): "workspace.commit",
    ("POST", _SANDBOX + "/workspace/discard"): "workspace.discard",
    ("POST", "/codebases"): "codebase.create",
    ("DELETE", _CODEBASE): "codebase.delete",
    ("PUT", _CODEBASE + "/files"): "codebase.write",
    ("POST", _CODEBASE + "/tar"): "codebase.upload",
    ("POST", _SANDBOX + "/snapshots"): "snapshot.create", ("POST", _SANDBOX + "/fork"): "sandbox.fork",
    ("DELETE", "/templates/{template_id}"): "snapshot.delete",
    ("POST", "/snapshots/{snapshot_id}/export"): "snapshot.export", ("POST", "/snapshots/import"): "snapshot.import",
    ("POST", "/volumes"): "volume.create", ("DELETE", "/volumes/{volume_id}"): "volume.delete",
    ("PUT", _SANDBOX + "/network"): "sandbox.network.update",
    ("POST", _SANDBOX + "/ports/{port}/expose"): "port.expose",
    ("DELETE", _SANDBOX + "/ports/{port}/expose"): "port.unexpose",
    ("POST", _SANDBOX + "/ports/{port}/wait"): "port.wait",
}
# control-plane reads: recorded only when refused (401, 403, 404)
CONTROL_READS = {
    ("GET", "/sandboxes"): "sandbox.list", ("GET", "/v2/sandboxes"): "sandbox.list",
    ("GET", _SANDBOX): "sandbox.get",
    ("GET", _SANDBOX + "/metrics"): "sandbox.metrics",
    ("GET", _SANDBOX + "/logs"): "sandbox.logs", ("GET", "/v2" + _SANDBOX + "/logs"): "sandbox.logs",
    ("GET", _SANDBOX + "/packages"): "packages.list",
    ("GET", "/audit"): "audit.read",
    ("GET", _SANDBOX + "/sessions"): "session.list",
    ("GET", _SANDBOX + "/sessions/{session_id}"): "session.get",
    ("GET", _SANDBOX + "/permissions"): "permissions.get",
    ("GET", "/codebases"): "codebase.list",
    ("GET", _CODEBASE): "codebase.get",
    ("GET", _CODEBASE + "/files"): "codebase.read",
    ("GET", _CODEBASE + "/tar"): "codebase.download",
    ("GET", _CODEBASE + "/list"): "codebase.list_files",
    ("GET", "/snapshots"): "snapshot.list",
    ("GET", "/volumes"): "volume.list", ("GET", "/volumes/{volume_id}"): "volume.get",
    ("GET", _SANDBOX + "/ports"): "port.list",
}
_CONTENT = "/volumecontent/{volume_id}"
# a volume's content API (its own token) that acts (reads only when refused: 401)
VOLUME_ACTIONS = {
    ("PUT", _CONTENT + "/file"): "volume.file.write", ("POST", _CONTENT + "/dir"): "volume.make_dir",
    ("PATCH", _CONTENT + "/path"): "volume.update", ("DELETE", _CONTENT + "/path"): "volume.remove",
}
# sandbox traffic that acts (the rest, reads and stdin, only when refused: 401, 403)
SANDBOX_ACTIONS = {
    ("POST", "/process.Process/Start"): "process.start",
    ("POST", "/process.Process/Connect"): "process.connect",
    ("POST", "/process.Process/SendSignal"): "process.signal",
    ("POST", "/filesystem.Filesystem/Remove"): "file.remove",
    ("POST", "/filesystem.Filesystem/Move"): "file.move",
    ("POST", "/filesystem.Filesystem/MakeDir"): "file.make_dir",
    ("POST", "/files"): "file.write",
    ("POST", "/execute"): "code.run",
    ("POST", "/contexts"): "context.create",
    ("POST", "/contexts/{context_id}/restart"): "context.restart",
    ("DELETE", "/contexts/{context_id}"): "context.remove",
}
_REFUSED = (401, 403)


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "denied", 403: "denied", 404: "not_found", 429: "refused", 499: "abandoned"}.get(status, "failed")


def _via(scope: Scope) -> str:
    """Which credential sandbox traffic carried (never the credential)."""
    headers = dict(scope["headers"])
    if b"x-access-token" in headers:
        return "token"
    if b"signature=" in scope.get("query_string", b""):
        return "signature"
    return "traffic token" if b"e2b-traffic-access-token" in headers else "none"


def classify(scope: Scope, status: int) -> str | None:
    """The action a finished request is recorded as, or None if it is not recorded."""
    route = scope.get("route")
    if route is None:
        return None
    access, method = access_of(route), scope["method"]
    template = route_template(scope, status)
    if access is Access.SANDBOX:
        if (method, template) == ("GET", "/files") and _via(scope) == "signature":
            return "file.read"  # a signed download URL used
        # a Connect method by its own name, refused or not (the table holds fixed names only)
        action = SANDBOX_ACTIONS.get((method, scope["path"] if isinstance(route, Mount) else template))
        return action or (f"{method} {template}" if status in _REFUSED else None)
    if access is Access.VOLUME:
        return VOLUME_ACTIONS.get((method, template)) or (f"{method} {template}" if status in _REFUSED else None)
    if access is Access.UPLOAD:  # a template build's files, through the signed URL (template_routes.py)
        return "template.files.upload"
    if access in (Access.API_KEY, Access.ADMIN):
        if (action := CONTROL_ACTIONS.get((method, template))) is not None:
            return action
        if method in ("GET", "HEAD") or isinstance(route, Mount):  # reads, and front doors of their own (/mcp)
            return CONTROL_READS.get((method, template), f"{method} {template}") if status in (*_REFUSED, 404) else None
        return f"{method} {template}"
    return None


@dataclass(frozen=True)
class Entry:
    id: int
    time: float
    team: str | None
    key_id: str | None
    sandbox: str | None
    action: str
    outcome: str
    status: int | None
    detail: dict[str, Any]
    foreign_team: str | None

    def json(self, admin: bool) -> dict:
        when = datetime.fromtimestamp(self.time, timezone.utc).isoformat(timespec="milliseconds")
        out = {"id": self.id, "time": when.replace("+00:00", "Z"), "team": self.team, "key": self.key_id,
               "sandbox": self.sandbox, "action": self.action, "outcome": self.outcome, "status": self.status,
               "detail": self.detail}
        if admin:
            out["foreignTeam"] = self.foreign_team
        return out


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_DETAIL_TEXT]
    if isinstance(value, list | tuple):
        return [_text(v) for v in value[:20]]
    return value


def ensure_schema(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def append(db: sqlite3.Connection, action: str, outcome: str = "ok", **fields: Any) -> None:
    """Write one row at once (the CLI's key and team changes)."""
    ensure_schema(db)
    db.execute(_INSERT, _stored(_row(action, outcome, **fields)))


def _row(action: str, outcome: str, *, team: str | None = None, key_id: str | None = None,
         sandbox: str | None = None, status: int | None = None, detail: dict | None = None,
         foreign_team: str | None = None, when: float | None = None) -> tuple:
    return (when or time.time(), team, key_id, sandbox, action, outcome, status, detail or None, foreign_team)


def _stored(row: tuple) -> tuple:
    """A row as written: its details as JSON (encoded by the writer, off the request's path)."""
    detail = row[7]
    if detail is None:
        return row
    text = json.dumps({k: _text(v) for k, v in detail.items() if v is not None}, default=str)
    return (*row[:7], text, row[8])


class AuditLog:
    """The server's writer of the trail, and its reader (GET /audit)."""

    def __init__(self, path: Path, retention_days: float, max_rows: int):
        self.path, self.retention_days, self.max_rows = path, retention_days, max_rows
        self._writer = self._connect()
        ensure_schema(self._writer)
        self._reader = self._connect()
        self._pending: deque[tuple] = deque()
        self.dropped = 0
        self._queued = self._written = 0  # rows queued and committed so far
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._since_prune, self._pruned_at = 0, 0.0
        self._thread = threading.Thread(target=self._run, name="sandlot-audit", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # ---- writing -------------------------------------------------------------------------------

    def record(self, action: str, outcome: str = "ok", **fields: Any) -> None:
        """Queue one row (see _row for the fields). Cheap: no I/O here."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("audit rows dropped: %d (the database does not keep up)", self.dropped)
            return
        self._pending.append(_row(action, outcome, **fields))
        self._queued += 1

    def request(self, scope: Scope, info: RequestInfo, status: int, when: float) -> None:
        """A finished request (observe.py), recorded if classify() names it."""
        action = classify(scope, status)
        if action is None:
            return
        detail = dict(info.detail) if info.detail else {}
        if scope.get("route") is not None and access_of(scope["route"]) is Access.SANDBOX:
            detail["via"] = _via(scope)
            if action.startswith("file.") and "path" not in detail and "paths" not in detail:
                detail["path"] = _query_path(scope)
        elif scope.get("route") is not None and access_of(scope["route"]) is Access.VOLUME:
            detail["volume"] = scope.get("path_params", {}).get("volume_id")
        outcome = "failed" if detail.get("error") and status < 400 else outcome_of(status)
        sandbox = info.sandbox_id or scope.get("path_params", {}).get("sandbox_id")
        self.record(action, outcome, team=info.team, key_id=info.key_id, sandbox=sandbox, status=status,
                    detail=detail, foreign_team=info.foreign_team, when=when)

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every row queued so far is committed (readers call it first)."""
        target = self._queued
        self._wake.set()
        with self._done:
            self._done.wait_for(lambda: self._written >= target or not self._thread.is_alive(), timeout)

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(30)
        self._write()  # whatever came after the thread's last round
        self._writer.close()
        self._reader.close()

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            try:
                self._write()
                if self._since_prune >= PRUNE_AFTER_ROWS or time.monotonic() - self._pruned_at >= PRUNE_INTERVAL:
                    self.prune()
            except Exception:  # the database locked or full: retry later, the rows stay queued
                log.exception("could not write the audit trail")
                time.sleep(1)

    def _write(self) -> None:
        batch = []
        while self._pending and len(batch) < 10_000:
            batch.append(self._pending[0])
            self._pending.popleft()
        if batch:
            self._writer.execute("BEGIN")
            try:
                self._writer.executemany(_INSERT, map(_stored, batch))
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                self._pending.extendleft(reversed(batch))
                raise
            self._since_prune += len(batch)
        with self._done:
            self._written += len(batch)
            self._done.notify_all()
        if self._pending:
            self._wake.set()

    def prune(self) -> None:
        """Delete what retention and the per-team cap no longer keep."""
        db = self._writer
        db.execute("DELETE FROM audit WHERE time < ?", (time.time() - self.retention_days * 86400,))
        crowded = db.execute("SELECT team FROM audit GROUP BY team HAVING COUNT(*) > ?", (self.max_rows,)).fetchall()
        for (team,) in crowded:
            db.execute("DELETE FROM audit WHERE team IS ? AND id <= (SELECT id FROM audit WHERE team IS ? "
                       "ORDER BY id DESC LIMIT 1 OFFSET ?)", (team, team, self.max_rows))
        self._since_prune, self._pruned_at = 0, time.monotonic()

    # ---- reading -------------------------------------------------------------------------------

    def query(self, *, team: str | None = None, all_teams: bool = False, key: str | None = None,
              sandbox: str | None = None, action: str | None = None, outcome: str | None = None,
              since: float | None = None, until: float | None = None, before: int | None = None,
              limit: int = 100) -> list[Entry]:
        """Newest first. `team` (required unless `all_teams`), the other filters exact, but
        `action` ending in '.' or '*' is a prefix ("sandbox." or "file.*"); `before`: a cursor (an id)."""
        self.flush()
        where, args = [], []
        if not all_teams:
            where.append("team IS ?")
            args.append(team)
        elif team is not None:
            where.append("team = ?")
            args.append(team)
        for column, value in (("key_id", key), ("sandbox", sandbox), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if action is not None:
            if action.endswith(("*", ".")):
                where.append("substr(action, 1, ?) = ?")
                prefix = action.rstrip("*")
                args += [len(prefix), prefix]
            else:
                where.append("action = ?")
                args.append(action)
        for clause, value in (("time >= ?", since), ("time <= ?", until), ("id < ?", before)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = ("SELECT id, time, team, key_id, sandbox, action, outcome, status, detail, foreign_team FROM audit"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
        rows = self._reader.execute(sql, (*args, limit)).fetchall()
        return [Entry(*r[:8], json.loads(r[8]) if r[8] else {}, r[9]) for r in rows]


def _query_path(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get("path")
    return values[0] if values else None
