"""One sandbox's workspace as the daemon holds it: where its files are, its rules, who may enter,
and where its denied operations are reported.

Denials go to the server on its socket (``report``, root only: reports.py; the server's
denials.py writes them to the audit trail and the sandbox's log), never to a file: what a sandbox
provokes must not grow anything on the host's disk. Per workspace at most DENIALS_PER_WINDOW are
reported in DENIAL_WINDOW seconds, the rest counted and reported as one number once the window
ends (the daemon's `tick`), so a scan of a protected tree cannot push its team's history out of the
audit trail. With no server listening (it restarts) they are dropped.
"""

from __future__ import annotations

import os
import time

from .. import permissions as P
from ..syscalls import openat2
from .reports import Reporter

DENIAL_WINDOW = 60.0
DENIALS_PER_WINDOW = 30
MAX_REPORTED_PATH = 1024  # characters of a path in a report (the audit trail keeps as many)
_reporters: dict[str, Reporter] = {}  # the server's socket -> the daemon's one connection to it


def reporter(path: str) -> Reporter:
    if path not in _reporters:
        _reporters[path] = Reporter(path)
    return _reporters[path]


class Workspace:
    def __init__(self, sandbox_id: str, root: str, uid_base: int, uid_count: int, owner: tuple[int, int],
                 rules: list[dict], report: str | None, audit: bool = True):
        self.id = sandbox_id
        # the overlay's merged directory; every path below it is opened relative to this fd
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        self.uids = range(uid_base, uid_base + uid_count)
        self.owner = owner  # (uid, gid) on the host that every file is shown with
        self.permissions = P.Permissions([P.Rule.from_json(r) for r in rules])
        self.reporter = reporter(report) if report else None  # to the server's socket for denials
        self.audit = audit
        self.top = 0  # the inode of its directory in the mount
        self.listed = 0  # names held by its open directories (fs.py: MAX_LISTED)
        self._window, self._reported, self._dropped = -DENIAL_WINDOW, 0, 0

    def close(self) -> None:
        self._report_dropped()
        os.close(self.root_fd)

    def reroot(self, root: str) -> None:
        """From now on, paths resolve below ``root`` (open files keep the old one)."""
        old, self.root_fd = self.root_fd, os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        os.close(old)

    def admits(self, uid: int) -> bool:
        """Only the sandbox's own processes (host root included, for its own bind) reach it."""
        return uid in self.uids

    # ---- the files -------------------------------------------------------------------------

    @staticmethod
    def rel(path: str) -> bytes:
        return os.fsencode(path[1:]) if path != "/" else b"."

    def parent_fd(self, path: str) -> tuple[int, bytes, bool]:
        """(fd of the directory holding ``path``, its last name, whether the caller closes the fd)."""
        parent, _, name = path.rpartition("/")
        if not parent:
            return self.root_fd, os.fsencode(name), False
        return openat2(self.root_fd, self.rel(parent), os.O_PATH | os.O_DIRECTORY), os.fsencode(name), True

    def lstat(self, path: str) -> os.stat_result:
        if path == "/":
            return os.stat(self.root_fd)
        fd, name, close = self.parent_fd(path)
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            if close:
                os.close(fd)

    def open(self, path: str, flags: int, mode: int = 0) -> int:
        return openat2(self.root_fd, self.rel(path), flags, mode)

    # ---- denied operations -------------------------------------------------------------------

    def deny(self, op: str, path: str, pid: int) -> None:
        """Report a denied operation: which, on what path, by which process of the sandbox."""
        if not (self.audit and self.reporter):
            return
        self.tick()
        if self._reported >= DENIALS_PER_WINDOW:
            self._dropped += 1
            return
        self._reported += 1
        inner, comm = _process(pid)
        self._send({"op": op, "path": path[:MAX_REPORTED_PATH], "pid": inner, "process": comm})

    def tick(self) -> None:
        """Start a new window if this one is over, reporting what it counted (the daemon calls it
        every few seconds too, so a count is never held back until the next denial)."""
        if self.reporter is not None:
            self.reporter.flush()
        now = time.monotonic()
        if now - self._window >= DENIAL_WINDOW:
            self._report_dropped()
            self._window, self._reported = now, 0

    def _report_dropped(self) -> None:
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self._send({"more": dropped})

    def _send(self, report: dict) -> None:
        if self.reporter is not None and not self.reporter.send({"sandbox": self.id, "time": time.time(), **report}):
            self._dropped += report.get("more", 1)  # the daemon's buffer is full: counted for later


def _process(pid: int) -> tuple[int, str]:
    """The pid as the sandbox sees it (its own pid namespace) and the process's name."""
    try:
        with open("/proc/%d/status" % pid) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields.get("NSpid", str(pid)).split()[-1]), fields.get("Name", "?").strip()
    except (OSError, ValueError):
        return pid, "?"
