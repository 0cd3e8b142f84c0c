"""A small process that forks the stems (stems.py), so that the server does not fork itself.

Forking the server copies its page tables while it holds the GIL (~3.5 ms at 150 MiB, at every
create's refill, with the event loop stopped), and leaves its memory copy-on-write shared with a
stem that may wait for minutes: each page the server writes meanwhile is copied. The zygote is a
fresh interpreter with only the stems' code loaded; a fork of it costs a fraction of that and runs
beside the server, not inside it.

It is started at the first stem a namespace runtime forks, lives while its control socket is open
(the server's end: a stopped or killed server closes it) and reaps what it forked: the stems, and
the sandboxes' outer bwrap they become. Stems waiting when it exits see their own socket close and
exit too; running sandboxes carry on (a restarted server adopts them, as before).

Control socket (SOCK_SEQPACKET): the server sends a new stem's socket (SCM_RIGHTS) with the JSON
list of the cgroup.procs files it attaches to; the zygote answers the stem's pid (8 bytes, signed;
-errno if it could not fork).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading

from .. import syscalls

PID = 8  # bytes of an answer
ANSWER_TIMEOUT = 10.0  # seconds: a fork takes milliseconds


class Zygote:
    """The server's end: asks the zygote for stems, starting it at the first ask."""

    def __init__(self, base_ns: int | None = None) -> None:
        self.base_ns = base_ns  # the mount namespace it forks in (mount_ns.py); None: the server's
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # one request and its answer at a time
        self._closed = False

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            base = [] if self.base_ns is None else [self.base_ns]
            self.proc = subprocess.Popen([sys.executable, "-m", "sandlot.runtimes.zygote", str(theirs.fileno()),
                                          *map(str, base)], pass_fds=[theirs.fileno(), *base], stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(ANSWER_TIMEOUT)  # one that stopped answering is given up (OSError), not waited for
        self._sock = ours

    def fork_stem(self, stem_sock: socket.socket, procs: list[str]) -> int:
        """Fork a stem that runs stems._stem_main on `stem_sock`; its pid. OSError if the zygote
        cannot be started, is gone or could not fork."""
        with self._lock:
            if self._closed:
                raise OSError("the stem zygote is closed")
            try:
                if self.proc is None:
                    self._start()
                socket.send_fds(self._sock, [json.dumps(procs).encode()], [stem_sock.fileno()])
                answer = self._sock.recv(PID)
                if len(answer) != PID:
                    raise OSError("the stem zygote has exited")
            except OSError:  # not asked again: a late answer would be taken for the next request's
                self._closed = True
                if self._sock is not None:
                    self._sock.close()
                raise
        pid = int.from_bytes(answer, "little", signed=True)
        if pid < 0:
            raise OSError(-pid, os.strerror(-pid))
        return pid

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()  # it exits at EOF
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _reap(*_) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(fd: int, base_ns: int | None = None) -> None:
    from .stems import _stem_main  # loaded before any fork: a stem imports nothing

    if base_ns is not None:  # its stems make their mount namespaces from there (mount_ns.py)
        syscalls.setns(base_ns, syscalls.CLONE_NEWNS)
        os.close(base_ns)
    ctl = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C to the server's terminal: the server decides
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 1)
        except ConnectionError:
            return
        if not msg:
            return  # the server went away
        try:
            procs = json.loads(msg)
            if len(fds) != 1:
                raise ValueError("one socket per stem")
            pid = os.fork()
        except (OSError, ValueError) as e:
            pid = -(getattr(e, "errno", None) or errno.EINVAL)
        else:
            if pid == 0:
                ctl.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _stem_main(fds[0], procs)  # never returns
        for f in fds:
            os.close(f)
        try:
            ctl.send(pid.to_bytes(PID, "little", signed=True))
        except ConnectionError:
            return  # the server went away meanwhile (its stem exits at its own socket's end)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
