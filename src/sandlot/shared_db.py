"""One SQLite connection shared by a server's threads: the state database's side tables (snapshots,
volumes, built templates) and the layer store. Autocommit; one statement at a time, or several
together under `locked()`."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


class SharedDb:
    def __init__(self, path: Path, schema: str, pragmas: tuple[str, ...] = ()):
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in pragmas:
            self._db.execute(pragma)
        self._db.executescript(schema)
        self._lock = threading.Lock()

    def sql(self, sql: str, args=(), many: bool = False) -> list:
        """Run one statement (`many`: over each of `args`) and return its rows."""
        with self._lock:
            cur = self._db.executemany(sql, args) if many else self._db.execute(sql, args)
            return cur.fetchall()

    @contextlib.contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, for statements no other thread's may come between."""
        with self._lock:
            yield self._db

    def close(self) -> None:
        self._db.close()
