"""Stems: sandbox processes forked ahead of time and already in cgroups, so a create does not wait.

Moving a process into a cgroup v1 group waits for an RCU grace period (cgroup_threadgroup_rwsem):
3-28 ms on these machines, most of a cold create's time outside the agent and all of its spread. A
stem is forked in the background, by the stem zygote (zygote.py: not the server, whose fork stops
it for milliseconds) or by the server where that is not running, into spare groups of its own
(`<group>/spare-<token>`). A create renames those groups to the sandbox's, writes its limits, and
sends the stem the sandbox's uid base and fds over a socketpair; the stem then goes on exactly as a
freshly forked child would (`become_sandbox`). Without a ready stem, a create has the zygote fork
one at once and waits for it (fork_now); it forks itself only while the zygote is not running.

A stem closes every inherited fd at once (it must not hold the server's sockets open), and exits
when its socketpair closes: a stopped or killed server leaves no stem behind, only spare groups,
which the next start removes with the other leftovers.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cgroups import SandboxCgroup
from .mount_ns import own_namespace
from .netns import new_netns
from .sandbox_process import become_sandbox

if TYPE_CHECKING:
    from .zygote import Zygote

log = logging.getLogger("sandlot.runtime")

SPARE_PREFIX = "spare-"
READY = b"R"


@dataclass
class Stem:
    pid: int
    sock: socket.socket  # the server's end
    spare: str  # name of its spare cgroup
    ready: bool = False


class Stems:
    """Keeps `keep` stems forked and attached; `take()` hands one out (or None)."""

    def __init__(self, cgroup_version: str, group: str, on_fork: Callable[[int], None], keep: int = 2,
                 zygote: Zygote | None = None, base_ns: int | None = None):
        self.version, self.group, self.keep = cgroup_version, group, keep
        self.on_fork = on_fork  # called with the pid of each stem the server forks itself (it reaps them)
        self.zygote = zygote  # forks (and reaps) the stems instead of the server, while it runs (zygote.py)
        self.base_ns = base_ns  # where a stem the server forks makes its mount namespace (mount_ns.py)
        self._stems: list[Stem] = []
        self._lock = threading.Lock()
        self._closed = False
        self._filling: threading.Thread | None = None
        self._forking: str | None = None  # the spare group of the stem being forked now
        self._forking_now: set[str] = set()  # those of stems forked for a create (fork_now)

    def take(self) -> Stem | None:
        with self._lock:
            found = None
            for stem in list(self._stems):
                if not (stem.ready or _readable(stem.sock)):
                    continue  # still attaching
                if not stem.ready and stem.sock.recv(1) != READY:  # it died: never ready
                    self._stems.remove(stem)
                    discard(stem, self.version, self.group)
                    continue
                stem.ready = True
                self._stems.remove(stem)
                found = stem
                break
            self._refill_later()
            return found

    def fork_now(self, timeout: float = 30.0) -> Stem | None:
        """For a create that found no stem ready: one forked now by the zygote, once it is attached;
        None if the zygote is not running (the create forks itself). The server's own fork copies
        its page tables, then its heap page by page while the child lives (its garbage collector
        writes to every object): with 2000 sandboxes alive, most of a create's CPU."""
        if self.zygote is None or self.zygote.proc is None or self._closed:
            return None
        spare = SPARE_PREFIX + secrets.token_hex(6)
        with self._lock:
            self._forking_now.add(spare)
        try:
            stem = self._fork(spare, server_may_fork=False)
            if stem is None:
                return None
            stem.sock.settimeout(timeout)
            try:
                ready = stem.sock.recv(1) == READY
            except OSError:
                ready = False
            if not ready:
                discard(stem, self.version, self.group)
                return None
            stem.sock.settimeout(None)
            stem.ready = True
            return stem
        finally:
            with self._lock:
                self._forking_now.discard(spare)

    def _refill_later(self) -> None:
        if self._filling is None and not self._closed and len(self._stems) < self.keep:
            self._filling = threading.Thread(target=self._refill, name="sandlot-stems", daemon=True)
            self._filling.start()

    def _refill(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._stems) >= self.keep:
                        return
                spare = SPARE_PREFIX + secrets.token_hex(6)
                with self._lock:
                    self._forking = spare  # a spare already, for spares(), from its first directory on
                try:
                    stem = self._fork(spare)
                except BaseException:
                    with self._lock:
                        self._forking = None
                    raise
                with self._lock:
                    self._forking = None  # in the same hold as the append: never out of spares()
                    if self._closed:
                        discard(stem, self.version, self.group)
                        return
                    self._stems.append(stem)
        except Exception:
            log.exception("could not fork a stem; creates fork their own")
        finally:
            with self._lock:
                self._filling = None

    def _fork(self, spare: str, server_may_fork: bool = True) -> Stem | None:
        """A stem in the spare group `spare`: the zygote's, else (if `server_may_fork`) the
        server's own; None if neither."""
        cg = SandboxCgroup(spare, self.version, self.group)
        cg.make_dirs()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        procs = cg.proc_files()
        if self.zygote is not None:
            try:
                pid = self.zygote.fork_stem(theirs, procs)
            except OSError as e:
                log.error("the stem zygote failed (%s): the server forks its stems itself from now on", e)
                self.zygote = None
            else:
                theirs.close()
                return Stem(pid, ours, spare)
        if not server_may_fork:
            ours.close()
            theirs.close()
            cg.remove()
            return None
        pid = os.fork()
        if pid == 0:
            _stem_main(theirs.fileno(), procs, self.base_ns)  # never returns
        theirs.close()
        self.on_fork(pid)
        return Stem(pid, ours, spare)

    def spares(self) -> set[str]:
        """Cgroup names of the stems (not leftovers of sandboxes)."""
        with self._lock:
            return {stem.spare for stem in self._stems} | ({self._forking} if self._forking else set()) \
                | self._forking_now

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stems, self._stems = self._stems, []
            filling = self._filling
        if filling is not None:
            filling.join()  # a stem being forked now is discarded by the refill itself
        for stem in stems:
            discard(stem, self.version, self.group)


def discard(stem: Stem, version: str, group: str) -> None:
    stem.sock.close()  # the stem reads EOF and exits
    try:
        os.kill(stem.pid, 9)
    except ProcessLookupError:
        pass
    SandboxCgroup(stem.spare, version, group).remove()


def hand_over(stem: Stem, base: int, fds: list[int], exec_args: dict) -> None:
    """Tell the stem to become the sandbox with uid base `base`: `fds` (log, seccomp, ready, go,
    bwrap args, agent ready) and `exec_args` ({"bwrap", "command", "fsize"}) as become_sandbox takes them."""
    socket.send_fds(stem.sock, [json.dumps({"base": base, **exec_args}).encode()], fds)
    stem.sock.close()


def _stem_main(fd: int, procs: list[str], base_ns: int | None = None) -> None:
    """In the forked child: only syscalls and a few bytes of Python until exec (everything it
    calls is imported at the top: an import in a child of the zygote took ~190 ms). `base_ns`:
    the base mount namespace to enter first (a stem of the zygote is in it already)."""
    try:
        own_namespace(base_ns)  # mount_ns.py
        os.closerange(0, fd)
        os.closerange(fd + 1, 65536)  # none of the server's sockets may stay open in a stem
        for path in procs:
            with open(path, "w") as f:
                f.write("0")
        os.setsid()
        new_netns()  # while still host root: the namespace belongs to the host, not the sandbox
        sock = socket.socket(fileno=fd)
        sock.sendall(READY)
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
        if not msg or len(fds) != 6:
            os._exit(0)  # the server went away (or changed its mind): nothing to become
        sock.close()
        order = json.loads(msg)
        become_sandbox(order["base"], *fds, order["bwrap"], order["command"], order["fsize"])
    except BaseException:
        pass
    os._exit(127)


def _readable(sock: socket.socket) -> bool:
    # poll, not select: a server with many sandboxes holds fds past select's 1024
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
