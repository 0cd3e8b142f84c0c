"""The server's side of the permission filesystem: start the daemon (or adopt the one a previous
server left), add a sandbox's workspace, change its rules, remove it, stop the daemon.

Blocking calls: the runtime makes them from worker threads (its create and kill run there).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import _exceptions as E
from ..hostfs import mounts
from .. import syscalls

log = logging.getLogger("sandlot.permfs")

START_TIMEOUT = 20.0
CALL_TIMEOUT = 60.0
_PACKAGE = str(Path(__file__).resolve().parent.parent)
# `sandlot` as an empty package: the daemon imports permfs, permissions and syscalls, not the SDK
BOOT = ("import sys, types; pkg = types.ModuleType('sandlot'); pkg.__path__ = [%r]; sys.modules['sandlot'] = pkg; "
        "from sandlot.permfs.daemon import main; main()" % _PACKAGE)


def missing() -> str | None:
    """Why this server cannot run the permission filesystem, or None if it can."""
    if importlib.util.find_spec("pyfuse3") is None:
        return ("workspaces with path permissions need pyfuse3, which is not installed: "
                "pip install 'sandlot[permissions]' (it builds against libfuse3-dev)")
    return None


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
            if why := missing():
                raise E.Unsupported(why)
            self._clear_dead()
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

    def clear_dead(self) -> bool:
        """If no daemon answers, remove what a dead one left: its mount ("transport endpoint is
        not connected" to anything that looks), the mount point and its control socket. The
        server's owner of the mount: at start, at stop, and when a workspace goes. True if none
        answers."""
        with self._lock:  # not while ensure() starts a daemon
            if self.running() is not None:
                return False
            self._clear_dead()
            return True

    def _clear_dead(self) -> None:
        for _ in range(8):  # stacked mounts, if one was made over a dead one
            if not any(m.point == str(self.mount) for m in mounts()):
                break
            try:
                syscalls.umount(str(self.mount))  # lazy: a process may still be inside it
            except OSError as e:
                log.error("cannot unmount the dead permission filesystem at %s: %s", self.mount, e)
                return
            log.warning("unmounted the permission filesystem a dead daemon left at %s", self.mount)
        for remove in (self.mount.rmdir, self.control.unlink):
            with contextlib.suppress(FileNotFoundError):
                remove()

    def stop(self) -> None:
        """Unmount and end the daemon (when no sandbox needs it any more)."""
        if self.clear_dead():
            return
        self._call({"op": "stop"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(m.point == str(self.mount) for m in mounts()):
            time.sleep(0.02)
        with self._lock:  # asked to stop: whatever it did not remove goes, answering or not
            self._clear_dead()

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
        if not self.clear_dead():
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
