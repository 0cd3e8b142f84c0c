"""One sandbox's workspace as the daemon holds it: where its files are, its rules, who may enter,
and the log its denied operations go to."""

from __future__ import annotations

import os
import time

from .. import permissions as P
from ..runtimes.syscalls import openat2

DENIALS_PER_SECOND = 50  # past this, denials are counted, not written (a scan must not flood the log)


class Workspace:
    def __init__(self, sandbox_id: str, root: str, uid_base: int, uid_count: int, owner: tuple[int, int],
                 rules: list[dict], log: str | None, audit: bool = True):
        self.id = sandbox_id
        # the overlay's merged directory; every path below it is opened relative to this fd
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        self.uids = range(uid_base, uid_base + uid_count)
        self.owner = owner  # (uid, gid) on the host that every file is shown with
        self.permissions = P.Permissions([P.Rule.from_json(r) for r in rules])
        self.log = log
        self.audit = audit
        self.top = 0  # the inode of its directory in the mount
        self._window, self._written, self._dropped = 0.0, 0, 0

    def close(self) -> None:
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
        """Record a denied operation in the sandbox's log (issue 10's audit trail takes it over)."""
        if not (self.audit and self.log):
            return
        now = time.monotonic()
        if now - self._window >= 1:
            if self._dropped:
                self._write("permfs: %d more denied operations not shown\n" % self._dropped)
            self._window, self._written, self._dropped = now, 0, 0
        if self._written >= DENIALS_PER_SECOND:
            self._dropped += 1
            return
        self._written += 1
        inner, comm = _process(pid)
        self._write("permfs: denied %s %r (pid %s, %s)\n" % (op, path, inner, comm))

    def _write(self, line: str) -> None:
        try:
            with open(self.log, "a") as f:
                f.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + line)
        except OSError:
            pass


def _process(pid: int) -> tuple[str, str]:
    """The pid as the sandbox sees it (its own pid namespace) and the process's name."""
    try:
        with open("/proc/%d/status" % pid) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return fields.get("NSpid", str(pid)).split()[-1], fields.get("Name", "?").strip()
    except (OSError, ValueError):
        return str(pid), "?"
