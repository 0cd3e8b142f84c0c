"""The agent's socket: accepting connections, reading each one's request, dispatching it."""

import asyncio
import importlib
import os
import socket
import struct
import sys
import time
import traceback

from . import config, wire
from .errors import OpError

REQUEST_TIMEOUT = 30.0  # a connection that has not sent its request by then is dropped
LINGER = 10.0  # how long a refused client may go on sending before its connection is dropped
MAX_FDS = 3  # file descriptors a request may carry (sudo passes stdin, stdout, stderr)

# op -> (module, function). Modules load on first use, so an idle agent holds only this file.
ROUTES = {
    "process.start": ("processes", "start"),
    "process.connect": ("processes", "connect"),
    "process.list": ("processes", "list_processes"),
    "process.input": ("processes", "send_input"),
    "process.stream_input": ("processes", "stream_input"),
    "process.close_stdin": ("processes", "close_stdin"),
    "process.signal": ("processes", "send_signal"),
    "process.resize": ("processes", "resize"),
    "files.stat": ("files", "stat"),
    "files.list": ("files", "list_dir"),
    "files.mkdir": ("files", "mkdir"),
    "files.move": ("files", "move"),
    "files.remove": ("files", "remove"),
    "files.read": ("files", "read"),
    "files.write": ("files", "write"),
    "files.watch": ("watch", "watch"),
    "sudo": ("sudo", "sudo"),
}
# What a process inside the sandbox that is not root may ask for: the socket is world-writable so
# that the sudo shim reaches it, and everything else would let a user start processes as root.
UNPRIVILEGED_OPS = frozenset(("ping", "sudo"))

_PEERCRED = struct.Struct("3i")


def log(message):
    print("sandlot-agent: " + message, file=sys.stderr, flush=True)


class Connection:
    """One request's connection: framed I/O after the request, the fds it carried, its peer."""

    __slots__ = ("reader", "writer", "fds", "peer_uid", "last_sent")

    def __init__(self, reader, writer, fds, peer_uid):
        self.reader, self.writer, self.fds, self.peer_uid = reader, writer, fds, peer_uid
        self.last_sent = time.monotonic()

    def send(self, obj):
        self.send_frame(wire.encode_json(obj))

    def send_frame(self, frame):
        if not self.writer.transport.is_closing():
            self.writer.write(frame)
        self.last_sent = time.monotonic()

    async def hold(self, until):
        """Keep this stream open until the future ``until`` is done or the client leaves, sending
        {"keepalive": {}} after each ``keepalive_interval`` of silence. The client says nothing
        on a stream: any byte or EOF from it means it left."""
        gone = asyncio.ensure_future(self.reader.read(1))
        try:
            while not until.done() and not gone.done():
                silence = time.monotonic() - self.last_sent
                if silence >= config.keepalive_interval:
                    self.send({"keepalive": {}})
                    continue
                await asyncio.wait((until, gone), timeout=config.keepalive_interval - silence,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()

    def buffered(self):
        return self.writer.transport.get_write_buffer_size()


def _ping(req, conn):
    return {"ok": True, "pid": os.getpid()}


def _env(req, conn):
    return {"envs": config.envs}


_handlers = {"ping": _ping, "env": _env}


def _handler(op):
    handler = _handlers.get(op)
    if handler is None:
        route = ROUTES.get(op) if isinstance(op, str) else None
        if route is None:
            raise OpError("invalid_argument", "unknown op %r" % (op,))
        module = importlib.import_module("." + route[0], __package__)
        handler = _handlers[op] = getattr(module, route[1])
    return handler


async def _wait_readable(fd, timeout):
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(fd)


async def _read_request(sock):
    """Read the request frame with recvmsg, which (unlike asyncio's streams) keeps passed fds.

    Returns (request, fds, bytes received after the request)."""
    deadline = time.monotonic() + REQUEST_TIMEOUT
    buf, fds = b"", []
    fd_space = socket.CMSG_SPACE(MAX_FDS * 4)
    try:
        while True:
            if len(buf) >= 5:
                kind, length = struct.unpack(">cI", buf[:5])
                if kind != wire.JSON:
                    raise OpError("invalid_argument", "the request must be a JSON frame")
                if length > wire.MAX_FRAME:
                    raise OpError("invalid_argument", "request frame too large")
                if len(buf) >= 5 + length:
                    return wire.decode_json(buf[5:5 + length]), fds, buf[5 + length:]
            try:
                data, ancdata, _, _ = sock.recvmsg(65536, fd_space)
            except BlockingIOError:
                await _wait_readable(sock.fileno(), deadline - time.monotonic())
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


async def _streams(sock, rest):
    """asyncio streams over an accepted socket whose first ``rest`` bytes were already received."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=wire.CHUNK)  # reads pause once 2 chunks are waiting
    reader.feed_data(rest)  # before the transport starts reading, to keep the byte order
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _serve_one(sock):
    reader = writer = None
    fds = []
    try:
        peer_pid, peer_uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 _PEERCRED.size))
        try:
            req, fds, rest = await _read_request(sock)
        except (OpError, wire.WireError):
            reader, writer = await _streams(sock, b"")
            raise
        reader, writer = await _streams(sock, rest)
        op = req.get("op")
        # pid 0: the peer lives outside this pid namespace, i.e. it is the host's control plane.
        if peer_pid != 0 and peer_uid != 0 and op not in UNPRIVILEGED_OPS:
            raise OpError("permission_denied", "only root may use the agent's %r op" % (op,))
        conn = Connection(reader, writer, fds, peer_uid)
        reply = _handler(op)(req, conn)
        if asyncio.iscoroutine(reply):
            reply = await reply
        if reply is not None:
            conn.send(reply)
    except OpError as e:
        await _refuse(reader, writer, e.code, e.message)
    except (wire.WireError, ValueError) as e:  # ValueError: e.g. a NUL byte in a path or argument
        await _refuse(reader, writer, "invalid_argument", str(e))
    except (ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
        pass  # the client left, or never sent a request, or the agent stops
    except PermissionError as e:
        await _refuse(reader, writer, "permission_denied", str(e))
    except Exception as e:
        log("internal error:\n" + traceback.format_exc())
        await _refuse(reader, writer, "internal", "%s: %s" % (type(e).__name__, e))
    finally:
        for fd in fds:
            try:
                os.close(fd)  # handlers that keep a passed fd take it out of the list
            except OSError:
                pass
        if writer is not None:
            writer.close()
        else:
            sock.close()


async def _refuse(reader, writer, code, message):
    """Send an error frame, then drop what the client still sends until it closes: closing with
    unread data would fail the client's pending writes and reads before it saw the error."""
    if writer is None or writer.transport.is_closing():
        return
    writer.write(wire.error_frame(code, message))
    writer.write_eof()
    try:
        await asyncio.wait_for(_discard(reader), LINGER)
    except (asyncio.TimeoutError, ConnectionError):
        pass


async def _discard(reader):
    while await reader.read(65536):
        pass


class Server:
    def __init__(self, path):
        self.path = path
        self.tasks = set()
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
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)

    def _accept(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                # Out of fds or memory: stop accepting for a moment instead of spinning on the listener.
                log("accept failed: %s" % e)
                loop.remove_reader(self.listener.fileno())
                loop.call_later(1.0, self._resume_accepting)
                return
            sock.setblocking(False)
            task = loop.create_task(_serve_one(sock))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume_accepting(self):
        if self.listener is not None:
            asyncio.get_running_loop().add_reader(self.listener.fileno(), self._accept)

    def close(self):
        if self.listener is not None:
            asyncio.get_running_loop().remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        for task in self.tasks:
            task.cancel()
