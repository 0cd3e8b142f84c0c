"""Denied file operations in workspaces, as the permission filesystem reports them (permfs/:
`Workspace.deny`, rate-limited per workspace there; reports.py sends them): JSON lines on a unix
socket only host root can connect to. Each becomes a row of the audit trail (`file.denied`: op,
path, the process as the sandbox sees it) and an entry of the sandbox's log (journal.py).

The socket lives as long as the server: reports made while none listens (a restart) are lost,
which the daemon never waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path

from .audit import AuditLog
from .service import SandboxService

log = logging.getLogger("sandlot.denials")

MAX_REPORT = 8192  # bytes of one line (the daemon cuts a path to 1 KiB)


class Denials:
    def __init__(self, path: Path, service: SandboxService, audit: AuditLog):
        self.path, self.service, self.audit = path, service, audit
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()  # the daemon's (one, unless it restarted)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # an earlier server's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)  # root only, before it listens (nothing can connect until then)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REPORT)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._connections):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while line := await reader.readline():
                try:
                    self.record(json.loads(line))
                except (ValueError, TypeError, KeyError):
                    log.warning("a denial report that is not one: %r", line[:200])
        except (ValueError, ConnectionError):  # a line past the limit: not the daemon's
            log.warning("a denial report connection sent an overlong line: closed")
        finally:
            self._connections.discard(writer)
            writer.close()

    def record(self, report: dict) -> None:
        live = self.service.live.get(str(report["sandbox"]))
        if live is None:
            return  # ended meanwhile
        sandbox_id, when = live.id, float(report["time"])
        if "more" in report:
            detail = {"more": int(report["more"])}
            message = f"{detail['more']} more denied file operations not shown"
        else:
            detail = {"op": _text(report["op"]), "path": _text(report["path"]), "pid": int(report["pid"]),
                      "process": _text(report["process"])[:64]}
            message = f"denied {detail['op']} {detail['path']!r} (pid {detail['pid']}, {detail['process']})"
        self.audit.record("file.denied", "denied", team=live.record.team, sandbox=sandbox_id, detail=detail,
                          when=when)
        self.service.journal.record(sandbox_id, message, logger="permfs", level="warn", **detail)


def _text(value) -> str:
    """A name as the daemon decoded it (os.fsdecode), bytes that are not UTF-8 shown as \\xff:
    the audit trail and the log are UTF-8, and one such name must not make them unreadable."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
