"""The server's side of the permission filesystem: start the daemon (or adopt the one a previous
server left), add a sandbox's workspace, change its rules, remove it, stop the daemon.

Blocking calls: the runtime makes them from worker threads (its create and kill run there).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import _exceptions as E
from ..hostfs import mounts
from ..runtimes import syscalls

START_TIMEOUT = 20.0
CALL_TIMEOUT = 60.0
_PACKAGE = str(Path(__file__).resolve().parent.parent)
# `sandlot` as an empty package: the daemon imports permfs, permissions and runtimes.syscalls, not the SDK
BOOT = ("import sys, types; pkg = types.ModuleType('sandlot'); pkg.__path__ = [%r]; sys.modules['sandlot'] = pkg; "
        "from sandlot.permfs.daemon import main; main()" % _PACKAGE)


class PermFS:
    """One server's permission filesystem: mounted at ``<run_dir>/.permfs``, each sandbox's
    workspace at ``<run_dir>/.permfs/<sandbox id>`` (what its bwrap binds). Denied operations are
    reported to ``<run_dir>/.permfs-denials.sock``, a unix stream socket the server binds
    (server/denials.py)."""

    def __init__(self, run_dir: Path, log: Path):
        self.mount = run_dir / ".permfs"
        self.control = run_dir / ".permfs.sock"
        self.denials = run_dir / ".permfs-denials.sock"
        self.log = log
        self._lock = threading.Lock()

    def path(self, sandbox_id: str) -> Path:
        return self.mount / sandbox_id

    # ---- the daemon ----------------------------------------------------------------------------

    def running(self) -> dict | None:
        """The daemon's ping answer, or None if none answers."""
        try:
            return self._call({"op": "ping"}, timeout=5)
        except (OSError, ValueError, E.SandlotError):
            return None

    def ensure(self) -> None:
        """Start the daemon unless one answers."""
        with self._lock:
            if self.running() is not None:
                return
            self.unmount_stale()
            self.mount.mkdir(mode=0o711, exist_ok=True)
            with open(self.log, "ab") as out:
                proc = subprocess.Popen([sys.executable, "-c", BOOT, "--mount", str(self.mount),
                                         "--control", str(self.control)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd="/")
            # our child: reaped when it ends, so it never lingers as a zombie (a server that dies
            # leaves it running, for the next one to adopt)
            threading.Thread(target=proc.wait, name="permfs-reaper", daemon=True).start()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if self.running() is not None:
                    return
                time.sleep(0.01)
            proc.kill()
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise E.RuntimeFailure(f"the permission filesystem did not start: {tail.strip() or 'no output'}")

    def unmount_stale(self) -> None:
        """A daemon that died leaves its mount behind ("transport endpoint is not connected")."""
        if any(m.point == str(self.mount) for m in mounts()):
            try:
                syscalls.umount(str(self.mount))
            except OSError:
                pass

    def stop(self) -> None:
        """Unmount and end the daemon (when no sandbox needs it any more)."""
        if self.running() is None:
            self.unmount_stale()
            return
        self._call({"op": "stop"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(m.point == str(self.mount) for m in mounts()):
            time.sleep(0.02)
        self.unmount_stale()
        try:
            self.mount.rmdir()
        except OSError:
            pass

    # ---- workspaces ----------------------------------------------------------------------------

    def add(self, sandbox_id: str, root: Path, uid_base: int, uid_count: int, owner: tuple[int, int],
            rules: list[dict], audit: bool = True) -> None:
        self.ensure()
        self._call({"op": "add", "sandbox": sandbox_id, "root": str(root), "uid_base": uid_base,
                    "uid_count": uid_count, "owner": list(owner), "rules": rules, "report": str(self.denials),
                    "audit": audit})

    def set_rules(self, sandbox_id: str, rules: list[dict]) -> None:
        self._call({"op": "rules", "sandbox": sandbox_id, "rules": rules})

    def reroot(self, sandbox_id: str, root: Path) -> None:
        """Serve the workspace from another directory (a fresh layer) from now on."""
        self._call({"op": "reroot", "sandbox": sandbox_id, "root": str(root)})

    def remove(self, sandbox_id: str) -> None:
        if self.running() is not None:
            self._call({"op": "remove", "sandbox": sandbox_id})

    def sandboxes(self) -> set[str]:
        answer = self.running()
        return set(answer["sandboxes"]) if answer else set()

    def _call(self, request: dict, timeout: float = CALL_TIMEOUT) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(str(self.control))
                s.sendall((json.dumps(request) + "\n").encode())
                s.shutdown(socket.SHUT_WR)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError as e:
                raise E.RuntimeFailure(f"the permission filesystem does not answer: {e}") from None
        reply = json.loads(data or b"{}")
        if "error" in reply or not reply:
            raise E.RuntimeFailure(f"the permission filesystem refused {request['op']}: "
                                   f"{reply.get('error', 'no answer')}")
        return reply
