"""Processes started through the agent: the registry by pid and tag, output fan-out to every
connected stream, stdin and PTY input, signals, resizing, deadlines and the end of each process.

Each process keeps its latest output (AgentConfig.output_replay_bytes, 64 KiB by default) and replays
it to a client that connects later, so what a background process printed before is not lost.
Over 400 lines: one process's whole life (start, output, input, signals, end) is one state machine."""

import _signal as signal  # signal.py only adds enums to it
import binascii
import fcntl
import os
import struct
from _collections import deque  # the collections package: ~1.5 ms more at a first command

from ..protocol import wire
from . import config, loop, spawn, users
from .errors import OpError, field

READ_SIZE = 65536
PAUSE_AT = 256 * 1024  # bytes queued for one stream before the process's output stops being read
DRAIN_LIMIT = 1024 * 1024  # output still read from a pipe after its process ended (children may write on)

_by_pid = {}
_by_tag = {}


class Input:
    """A non-blocking fd the agent writes a child's input into (its stdin pipe or its PTY master).
    Writes and the close go out in the order they were asked for."""

    def __init__(self, fd):
        self.fd = fd
        self.queue = deque()  # (memoryview, Future); a None view closes the fd

    def write(self, data):
        """A Future done once ``data`` is written (failed_precondition if it cannot be)."""
        return self._enqueue(memoryview(data))

    def close(self):
        """A Future done once the writes queued before are done and the fd is closed."""
        return self._enqueue(None)

    def _enqueue(self, view):
        future = loop.Future()
        self.queue.append((view, future))
        if len(self.queue) == 1:
            self._flush()
        return future

    def _flush(self):
        while self.queue:
            view, future = self.queue[0]
            if view is None:
                fd = self.detach()  # which also settles this close's Future
                if fd is not None:
                    os.close(fd)
                return
            if view and self.fd is None:
                self.queue.popleft()
                future.set_exception(OpError("failed_precondition", "the process's input is closed"))
                continue
            try:
                written = os.write(self.fd, view) if view else 0
            except BlockingIOError:
                loop.add_writer(self.fd, self._flush)
                return
            except OSError as e:
                self.queue.popleft()
                future.set_exception(OpError("failed_precondition", "cannot write to the process: %s" % e.strerror))
                continue
            if written < len(view):
                self.queue[0] = (view[written:], future)
                continue
            self.queue.popleft()
            future.set_result(None)
        if self.fd is not None:
            loop.remove_writer(self.fd)

    def detach(self):
        """Stop writing (waiting writes fail) and give back the fd for its owner to close."""
        fd, self.fd = self.fd, None
        if fd is not None:
            loop.remove_writer(fd)
        queue, self.queue = self.queue, deque()
        for view, future in queue:
            if view:
                future.set_exception(OpError("failed_precondition", "the process's input is closed"))
            else:
                future.set_result(None)
        return fd


class OutputBudget:
    """agent.json's max_output_bytes for one command: what it prints past that is dropped (and
    still read, so the command does not block), after one marker saying so."""

    __slots__ = ("left",)
    MARKER = b"\n[sandlot: output past the sandbox's max_output_size was dropped]\n"

    def __init__(self):
        self.left = config.settings.max_output_bytes or None

    def take(self, data):
        if self.left is None:
            return data
        if self.left <= 0:
            return b""
        if len(data) <= self.left:
            self.left -= len(data)
            return data
        data, self.left = data[:self.left] + self.MARKER, 0
        return data


class Process:
    def __init__(self, popen, info, outputs, stdin_fd, master):
        self.pid = popen.pid
        self.popen = popen
        self.info = info  # what process.list shows
        self.outputs = outputs  # {fd: frame kind} still being read
        self.stdin = Input(stdin_fd) if stdin_fd is not None else None
        self.pty = Input(master) if master is not None else None
        self.master = master
        self.streams = []  # connections following the output
        self.ended = loop.Future()
        self.deadline = None
        self._paused = False
        self.internal = False  # sandlot's own helper: not listed to users
        self.budget = OutputBudget()
        self.recent = deque()  # latest output frames, replayed on connect
        self._recent_size = 0

    def begin(self, timeout_ms):
        _by_pid[self.pid] = self
        if self.info["tag"] is not None:
            _by_tag[self.info["tag"]] = self
        self._read_outputs()
        if timeout_ms > 0:
            self.deadline = loop.call_later(timeout_ms / 1000, spawn.signal_group, self.pid, signal.SIGKILL)
        loop.Task(self._wait())

    # ---- output ----------------------------------------------------------------------------

    def _read_outputs(self):
        for fd, kind in self.outputs.items():
            loop.add_reader(fd, self._on_output, fd, kind)

    def _on_output(self, fd, kind):
        data = read_available(fd)
        if data:
            data = self.budget.take(data)
            if data:
                self._emit(wire.encode(kind, data))
        elif data is not None:
            self._close_output(fd)

    def _remember(self, frame):
        limit = config.settings.output_replay_bytes
        if limit <= 0:
            return
        self.recent.append(frame)
        self._recent_size += len(frame)
        while self._recent_size > limit and len(self.recent) > 1:
            self._recent_size -= len(self.recent.popleft())

    def _emit(self, frame):
        self._remember(frame)
        congested = []
        for conn in self.streams:
            conn.send_frame(frame)
            if conn.buffered() > PAUSE_AT:
                congested.append(conn)
        if congested and not self._paused:
            # Backpressure: a slow client stops the reading, so the process blocks instead of the agent
            # buffering without bound.
            self._paused = True
            for fd in self.outputs:
                loop.remove_reader(fd)
            loop.Task(self._resume_after(congested))

    async def _resume_after(self, congested):
        for conn in congested:
            try:
                await conn.drain()
            except ConnectionError:
                self.unfollow(conn)  # that client is gone; its own handler finishes the stream
        self._paused = False
        if not self.ended.done():
            self._read_outputs()

    def _close_output(self, fd):
        loop.remove_reader(fd)
        del self.outputs[fd]
        if fd != self.master:
            os.close(fd)

    # ---- the end ----------------------------------------------------------------------------

    async def _wait(self):
        status = await spawn.wait(self.popen)
        _by_pid.pop(self.pid, None)
        if _by_tag.get(self.info["tag"]) is self:
            del _by_tag[self.info["tag"]]
        if self.deadline is not None:
            self.deadline.cancel()
        # Everything the process wrote before exiting is in its pipes or PTY by now (a PTY read
        # flushes the line discipline first). Children it left behind may hold them open: send what
        # is there and close, like Go's cmd.Wait, instead of waiting for them.
        for fd, kind in list(self.outputs.items()):
            left = DRAIN_LIMIT
            while left > 0:
                data = read_available(fd)
                if not data:
                    break
                left -= len(data)
                data = self.budget.take(data)
                for conn in self.streams if data else ():
                    conn.send_frame(wire.encode(kind, data))
            self._close_output(fd)
        if self.stdin is not None:
            fd = self.stdin.detach()
            if fd is not None:
                os.close(fd)
        if self.pty is not None:
            self.pty.detach()
            os.close(self.master)
        end = spawn.describe(status)
        for conn in self.streams:
            conn.send({"end": end})
        self.ended.set_result(end)

    # ---- streams ----------------------------------------------------------------------------

    async def follow(self, conn):
        """Send output, keepalives and the end on ``conn`` until the process ends or the client leaves."""
        self.streams.append(conn)
        try:
            await conn.hold(self.ended)
        finally:
            self.unfollow(conn)

    def unfollow(self, conn):
        if conn in self.streams:
            self.streams.remove(conn)


def read_available(fd):
    """Bytes from a non-blocking fd; b"" at its end; None if nothing is there yet."""
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # EIO: every holder of the PTY's other side has closed it


def _spawn_pipes(argv, user, cwd, env, with_stdin, restricted=True):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if with_stdin else (spawn.DEVNULL, None)
    try:
        popen = spawn.popen(argv, user, cwd, env, in_r, out_w, err_w, restricted=restricted)
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, in_r):
            if fd != spawn.DEVNULL:
                os.close(fd)
    for fd in (out_r, err_r, in_w):
        if fd is not None:
            os.set_blocking(fd, False)
    return popen, {out_r: wire.STDOUT, err_r: wire.STDERR}, in_w, None


def _spawn_passed(argv, user, cwd, env, stdin, stdout, restricted=True):
    """The process reads and writes fds its caller passed (stdio_fds); only stderr comes here."""
    err_r, err_w = os.pipe()
    try:
        popen = spawn.popen(argv, user, cwd, env, stdin, stdout, err_w, restricted=restricted)
    except BaseException:
        os.close(err_r)
        raise
    finally:
        os.close(err_w)
    os.set_blocking(err_r, False)
    return popen, {err_r: wire.STDERR}, None, None


def _spawn_pty(argv, user, cwd, env, size):
    import termios

    def take_terminal():  # in the child, a new session leader: the PTY becomes its controlling tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    master, slave = os.openpty()
    try:
        _set_size(master, size)
        if user.uid != os.geteuid():
            # like login(1), for programs that reopen their tty by name; CAP_CHOWN is a file
            # capability, in effect only while the agent acts as root (see privileges.py)
            with users.acting_as(users.by_uid(0) or user):
                os.fchown(slave, user.uid, -1)
        popen = spawn.popen(argv, user, cwd, env, slave, slave, slave, preexec_fn=take_terminal)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return popen, {master: wire.PTY}, None, master


def _size(pty):
    cols, rows = pty.get("cols", 80), pty.get("rows", 24)
    for value in (cols, rows):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise OpError("invalid_argument", "pty cols and rows must be integers in 1..65535")
    return cols, rows


def _set_size(master, size):
    import termios

    cols, rows = size
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _strings(value, name):
    if not all(isinstance(v, str) for v in value):
        raise OpError("invalid_argument", "%s must hold strings" % name)
    return value


def _select(req):
    pid, tag = req.get("pid"), req.get("tag")
    if pid is not None:
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise OpError("invalid_argument", "pid must be an integer")
        proc, what = _by_pid.get(pid), "pid %d" % pid
    elif tag is not None:
        proc, what = _by_tag.get(tag) if isinstance(tag, str) else None, "tag %r" % (tag,)
    else:
        raise OpError("invalid_argument", "pid or tag is required")
    if proc is None:
        raise OpError("not_found", "process with %s not found" % what)
    return proc


# ---- ops --------------------------------------------------------------------------------------


async def start(req, conn):
    cmd = field(req, "cmd", str, required=True)
    args = _strings(field(req, "args", list, []), "args")
    envs = field(req, "envs", dict, {})
    _strings(envs.values(), "envs")
    pty = field(req, "pty", dict)
    tag = field(req, "tag", str)
    timeout_ms = field(req, "timeout_ms", int, 0)
    user = users.lookup(field(req, "user", str))
    if tag is not None and tag in _by_tag:
        raise OpError("already_exists", "a process with tag %r is running" % tag)
    cwd = spawn.cwd_for(field(req, "cwd", str), user)
    env = user.environment()
    env.update(config.settings.envs)
    env.update(envs)
    argv = [cmd] + args
    internal = field(req, "internal", bool, False)
    if internal and config.settings.process_filter:
        env["SANDLOT_PROCESS_FILTER"] = config.settings.process_filter  # the driver filters its kernels
    elif config.settings.process_filter and os.path.basename(cmd) == "bash" and args[:1] == ["-l"]:
        # A login shell's profile forks (command substitutions), which the filter refuses, and bash
        # then gives up before the command: with no process creation, commands skip the profile.
        argv = [cmd] + args[1:]
    if field(req, "stdio_fds", bool, False):
        if pty is not None or len(conn.fds) != 2:
            raise OpError("invalid_argument", "stdio_fds takes two passed fds (stdin, stdout) and no pty")
        passed, conn.fds[:] = list(conn.fds), []
        try:
            popen, outputs, stdin_fd, master = _spawn_passed(argv, user, cwd, env, *passed, restricted=not internal)
        finally:  # the process has them now: a copy kept here would hide its end from the caller
            for fd in passed:
                os.close(fd)
    elif pty is not None:
        popen, outputs, stdin_fd, master = _spawn_pty(argv, user, cwd, env, _size(pty))
    else:
        popen, outputs, stdin_fd, master = _spawn_pipes(argv, user, cwd, env, field(req, "stdin", bool, False),
                                                        restricted=not internal)
    info = {"pid": popen.pid, "tag": tag, "cmd": cmd, "args": args, "envs": envs, "cwd": cwd}
    proc = Process(popen, info, outputs, stdin_fd, master)
    proc.internal = internal
    conn.send({"start": {"pid": proc.pid}})  # before begin(): no output may precede it
    proc.begin(timeout_ms)
    await proc.follow(conn)


async def connect(req, conn):
    proc = _select(req)
    conn.send({"start": {"pid": proc.pid}})
    for frame in proc.recent:  # what it printed before this client came
        conn.send_frame(frame)
    await proc.follow(conn)


def list_processes(req, conn):
    every = field(req, "all", bool, False)
    return {"processes": [p.info for p in _by_pid.values() if every or not p.internal]}


def _decode(data):
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, TypeError, ValueError):
        raise OpError("invalid_argument", "data must be base64") from None


def _input_of(proc, pty):
    target = proc.pty if pty else proc.stdin
    if target is None:
        raise OpError("failed_precondition", "the process has no pty" if pty else
                      "the process's stdin is not open (start it with stdin: true)")
    return target


async def send_input(req, conn):
    data, pty = _decode(field(req, "data", str, "")), field(req, "pty", bool, False)
    await _input_of(_select(req), pty).write(data)
    return {}


async def stream_input(req, conn):
    proc = _select(req)
    while True:
        kind, payload = await conn.read_frame()
        if kind is None:
            return {}
        if kind != wire.JSON:
            raise OpError("invalid_argument", "stream_input takes JSON frames")
        chunk = wire.decode_json(payload)
        await _input_of(proc, field(chunk, "pty", bool, False)).write(_decode(field(chunk, "data", str, "")))


async def close_stdin(req, conn):
    proc = _select(req)
    if proc.stdin is not None:
        await proc.stdin.close()  # after the writes already queued
    return {}


def send_signal(req, conn):
    sig = field(req, "signal", int, required=True)
    if not 0 < sig < signal.NSIG:
        raise OpError("invalid_argument", "no signal %d" % sig)
    spawn.signal_group(_select(req).pid, sig)
    return {}


def resize(req, conn):
    size = _size(req)
    proc = _select(req)
    if proc.master is None:
        raise OpError("failed_precondition", "the process has no pty")
    _set_size(proc.master, size)
    return {}


def kill_all():
    for proc in list(_by_pid.values()):
        try:
            spawn.signal_group(proc.pid, signal.SIGKILL)
        except OSError:
            pass
