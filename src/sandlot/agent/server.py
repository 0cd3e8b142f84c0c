"""The agent's socket: accepting connections, reading each one's request, dispatching it."""

import errno
import importlib
import os
import _socket as socket  # socket.py adds enums and makefile() to it (~6 ms of imports before ready)
import struct
import sys
import time
import types

from ..protocol import contract, wire
from . import config, loop
from .errors import OpError

REQUEST_TIMEOUT = 30.0  # a connection that has not sent its request by then is dropped
LINGER = 10.0  # how long a refused client may go on sending before its connection is dropped
MAX_FDS = 3  # file descriptors a request may carry (sudo passes stdin, stdout, stderr)
READ_SIZE = wire.CHUNK
DRAINED = 64 * 1024  # drain() waits until no more than this is queued for the client

_PEERCRED = struct.Struct("3i")


def log(message):
    print("sandlot-agent: " + message, file=sys.stderr, flush=True)


class Connection:
    """One request's connection: framed I/O after the request, the fds it carried, its peer.

    Sending never blocks: what the socket does not take is queued and written as it drains."""

    __slots__ = ("sock", "fd", "fds", "peer_uid", "last_sent", "inbuf", "out", "drained",
                 "closing", "eof_after_flush", "broken")

    def __init__(self, sock, fds, peer_uid, inbuf=b""):
        self.sock, self.fd, self.fds, self.peer_uid = sock, sock.fileno(), fds, peer_uid
        self.last_sent = time.monotonic()
        self.inbuf = bytearray(inbuf)
        self.out = bytearray()
        self.drained = []  # Futures of drain() callers
        self.closing = self.eof_after_flush = self.broken = False

    def send(self, obj):
        self.send_frame(wire.encode_json(obj))

    def send_frame(self, frame, payload=b""):
        """Send ``frame``, then ``payload`` (a file's chunk after its header: not joined first)."""
        self.last_sent = time.monotonic()
        if self.closing or self.broken:
            return
        if self.out:
            self.out += frame
            self.out += payload
            return
        try:
            sent = self.sock.sendmsg((frame, payload)) if payload else self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._break()
            return
        if sent < len(frame) + len(payload):
            if sent < len(frame):
                self.out += memoryview(frame)[sent:]
                self.out += payload
            else:
                self.out += memoryview(payload)[sent - len(frame):]
            loop.add_writer(self.fd, self._flush)

    def _flush(self):
        try:
            del self.out[:self.sock.send(self.out)]
        except BlockingIOError:
            return
        except OSError:
            self._break()
            return
        if len(self.out) <= DRAINED:
            self._wake_drained(None)
        if not self.out:
            loop.remove_writer(self.fd)
            self._after_flush()

    def _break(self):
        self.broken = True
        self.out.clear()
        loop.remove_writer(self.fd)
        self._wake_drained(ConnectionResetError("the client went away"))
        self._after_flush()

    def _wake_drained(self, error):
        waiters, self.drained = self.drained, []
        for future in waiters:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _after_flush(self):
        if self.eof_after_flush and not self.broken:
            self.eof_after_flush = False
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if self.closing and self.sock.fileno() >= 0:
            self.sock.close()

    def buffered(self):
        return len(self.out)

    async def drain(self):
        """Wait until the client has taken all but DRAINED bytes; ConnectionError if it left."""
        if self.broken:
            raise ConnectionResetError("the client went away")
        if len(self.out) > DRAINED:
            future = loop.Future()
            self.drained.append(future)
            await future

    def write_eof(self):
        self.eof_after_flush = True
        if not self.out:
            self._after_flush()

    def close(self):
        """Close once what is queued has been sent (or the client is gone)."""
        if self.closing:
            return
        self.closing = True
        if not self.out:
            self._after_flush()

    async def receive(self, timeout=None):
        """Read what the client sent next into ``inbuf``; False at its end."""
        await loop.wait_readable(self.fd, timeout)
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return True
        except OSError as e:
            raise ConnectionError(e.errno or errno.ECONNRESET, "the client connection broke") from None
        self.inbuf += data
        return bool(data)

    async def read_frame(self):
        """Return (kind, payload), or (None, b"") at a clean end of stream."""
        while True:
            frame = wire.split_frame(self.inbuf)
            if frame is not None:
                del self.inbuf[:frame[2]]
                return frame[0], frame[1]
            if not await self.receive():
                if self.inbuf:
                    raise wire.WireError("truncated frame")
                return None, b""

    async def hold(self, until):
        """Keep this stream open until the Future ``until`` is done or the client leaves, sending
        {"keepalive": {}} after each ``keepalive_interval`` of silence. The client says nothing
        on a stream: any byte or EOF from it means it left."""
        while not until.done() and not self.inbuf:
            silence = time.monotonic() - self.last_sent
            if silence >= config.settings.keepalive_interval:
                self.send({"keepalive": {}})
                continue
            woken = loop.Future()
            loop.add_reader(self.fd, woken.set_result, "gone")
            timer = loop.call_later(config.settings.keepalive_interval - silence, woken.set_result, None)
            try:
                await loop.first(until, woken)
            finally:
                loop.remove_reader(self.fd)
                timer.cancel()
            if woken.done() and woken.result() == "gone":
                return


def ping(req, conn):
    return {"ok": True, "pid": os.getpid()}


def env(req, conn):
    return {"envs": config.settings.envs}


_handlers = {}  # op -> its handler, once used


def preload():
    """Load what a first command needs (its handler's modules) before it is asked for."""
    _handler(contract.PROCESS_START)


def _handler(op):
    handler = _handlers.get(op)
    if handler is None:
        route = contract.OPERATIONS.get(op) if isinstance(op, str) else None
        if route is None:
            raise OpError("invalid_argument", "unknown op %r" % (op,))
        module = importlib.import_module("." + route[0], __package__)
        handler = _handlers[op] = getattr(module, route[1])
    return handler


async def _read_request(sock, buf=b"", timeout=REQUEST_TIMEOUT):
    """Read the request frame with recvmsg, to keep the fds it may carry. ``buf``: what the
    connection already holds of it. ``timeout`` None: wait as long as the client keeps it open.

    Returns (request, fds, bytes received after the request)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fds = []
    fd_space = socket.CMSG_SPACE(MAX_FDS * 4)
    try:
        while True:
            if len(buf) >= wire.HEADER_SIZE:
                kind, length = struct.unpack(">cI", buf[:wire.HEADER_SIZE])
                if kind != wire.JSON:
                    raise OpError("invalid_argument", "the request must be a JSON frame")
                if length > wire.MAX_FRAME:
                    raise OpError("invalid_argument", "request frame too large")
                end = wire.HEADER_SIZE + length
                if len(buf) >= end:
                    return wire.decode_json(buf[wire.HEADER_SIZE:end]), fds, buf[end:]
            try:
                # close-on-exec: a passed fd reaches a child only as the stdio it is given as
                data, ancdata, _, _ = sock.recvmsg(65536, fd_space, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                await loop.wait_readable(sock.fileno(), None if deadline is None else deadline - time.monotonic())
                continue
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.extend(struct.unpack("%di" % (len(payload) // 4), payload[:len(payload) // 4 * 4]))
            if not data:
                raise ConnectionError("the client left before sending a whole request")
            buf += data
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


async def _serve_one(sock):
    """Serve the connection's request; then, if the host's control plane asked to keep the
    connection (``keep``) and the op ended cleanly, its next request, and so on."""
    conn = None
    fds = []
    try:
        peer_pid, peer_uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 _PEERCRED.size))
        rest, timeout = b"", REQUEST_TIMEOUT
        while True:
            try:
                req, fds, rest = await _read_request(sock, rest, timeout)
            except (OpError, wire.WireError):
                conn = Connection(sock, [], peer_uid)
                raise
            conn = Connection(sock, fds, peer_uid, rest)
            keep = req.get("keep") is True and peer_pid == 0 and not fds
            op = req.get("op")
            # pid 0: the peer lives outside this pid namespace, i.e. it is the host's control plane.
            if peer_pid != 0 and peer_uid != 0 and op not in contract.UNPRIVILEGED:
                raise OpError("permission_denied", "only root may use the agent's %r op" % (op,))
            if peer_pid != 0 and op != contract.PING and config.settings.process_filter:
                # no process creation after start: none by the agent for a caller inside, root included
                raise OpError("permission_denied", "this sandbox may not create processes")
            reply = _handler(op)(req, conn)
            if isinstance(reply, types.CoroutineType):
                reply = await reply
            if reply is not None:
                conn.send(reply)
            # Kept: only for the host, whose connections carry one request at a time, and only once
            # everything of this op has gone out (a frame queued behind would follow the next reply).
            if not keep or conn.out or conn.closing or conn.broken:
                return
            rest, timeout, conn = bytes(conn.inbuf), None, None
    except OpError as e:
        await _refuse(conn, e.code, e.message)
    except (wire.WireError, ValueError) as e:  # ValueError: e.g. a NUL byte in a path or argument
        await _refuse(conn, "invalid_argument", str(e))
    except (ConnectionError, TimeoutError):
        pass  # the client left, or never sent a request
    except PermissionError as e:
        await _refuse(conn, "permission_denied", str(e))
    except Exception as e:
        loop.log_exception("internal error")
        await _refuse(conn, "internal", "%s: %s" % (type(e).__name__, e))
    finally:
        for fd in fds:
            try:
                os.close(fd)  # handlers that keep a passed fd take it out of the list
            except OSError:
                pass
        if conn is not None:
            conn.close()
        else:
            sock.close()


async def _refuse(conn, code, message):
    """Send an error frame, then drop what the client still sends until it closes: closing with
    unread data would fail the client's pending writes and reads before it saw the error."""
    if conn is None or conn.closing or conn.broken:
        return
    conn.send_frame(wire.error_frame(code, message))
    conn.write_eof()
    deadline = time.monotonic() + LINGER
    try:
        while True:
            del conn.inbuf[:]
            if not await conn.receive(deadline - time.monotonic()):
                return
    except (TimeoutError, ConnectionError):
        pass


class Server:
    def __init__(self, path):
        self.path = path
        self.listener = None

    def start(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o666)  # the sudo shim runs as any user in the sandbox
        sock.listen(256)
        sock.setblocking(False)
        self.listener = sock
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self):
        while True:
            try:
                fd, _ = self.listener._accept()  # what socket.socket.accept() wraps
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
            except BlockingIOError:
                return
            except OSError as e:
                # Out of fds or memory: stop accepting for a moment instead of spinning on the listener.
                log("accept failed: %s" % e)
                loop.remove_reader(self.listener.fileno())
                loop.call_later(1.0, self._resume_accepting)
                return
            sock.setblocking(False)
            loop.Task(_serve_one(sock))

    def _resume_accepting(self):
        if self.listener is not None:
            loop.add_reader(self.listener.fileno(), self._accept)

    def close(self):
        if self.listener is not None:
            loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
