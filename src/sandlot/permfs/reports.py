"""The daemon's reports of denied operations to the server (server/denials.py): JSON lines on one
unix stream connection to the server's socket (root only), made on first use and again after the
server restarts.

Never blocking, never on disk: the socket is non-blocking, a line the kernel does not take at once
waits in a buffer of MAX_BUFFERED bytes that the next report or `flush()` (the daemon's tick)
sends on, and what does not fit there, or finds no server listening, is dropped, and `send`
answers False so the caller counts it. A stream, not datagrams: a unix datagram socket queues ten
messages (net.unix.max_dgram_qlen), fewer than one burst of denials.
"""

from __future__ import annotations

import json
import socket

MAX_BUFFERED = 256 * 1024


class Reporter:
    def __init__(self, path: str):
        self.path = path
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._midline = False  # the connection got part of the buffer's first line

    def send(self, report: dict) -> bool:
        """Queue one report and send what the kernel takes; False if it was dropped."""
        line = (json.dumps(report) + "\n").encode()
        if len(self._buffer) + len(line) > MAX_BUFFERED:
            self.flush()
            if len(self._buffer) + len(line) > MAX_BUFFERED:
                return False
        self._buffer += line
        self.flush()
        return True

    def flush(self) -> None:
        """Send what the buffer holds, as far as the kernel takes it (a partial line stays queued)."""
        while self._buffer:
            sock = self._connected()
            if sock is None:
                self._buffer = b""  # no server: nobody to tell
                return
            try:
                sent = sock.send(self._buffer)
            except BlockingIOError:
                return
            except OSError:  # the server went away: a line it got part of is not sent again
                self._close()
                if self._midline:
                    self._buffer = self._buffer[self._buffer.find(b"\n") + 1:]
                    self._midline = False
                continue
            self._midline = self._buffer[sent - 1:sent] != b"\n"
            self._buffer = self._buffer[sent:]

    def _connected(self) -> socket.socket | None:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            try:
                sock.connect(self.path)
            except OSError:  # none listens (ENOENT, ECONNREFUSED), or too many connect (EAGAIN)
                sock.close()
                return None
            self._sock = sock
        return self._sock

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self.flush()
        self._close()
