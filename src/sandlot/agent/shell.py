"""One session's shell (agent/sessions.py has the ops): an interactive bash that keeps its state
(cwd, variables, functions, aliases, background jobs) from one command to the next. Longer than
most modules: the line protocol, its interrupts and the output plumbing depend on each other.

One interactive bash per session (-i, --noediting: no readline; prompts, history and the prompt
command switched off), reading lines from a pipe the agent writes; its stdout is the agent's status
pipe and its own stderr goes nowhere. For each command the agent writes the command's text to a file
in the session's private directory (contract.SESSIONS_DIR_NAME next to the agent's socket), where
it also keeps two FIFOs for the output, then sends one line:

    \\builtin source DIR/command <STDIN >DIR/o.N 2>DIR/e.N; \\__sandlot_end M

- `source` runs the text in the shell itself, so `cd`, `export`, `declare` (unlike eval inside a
  function, which makes it local), functions and aliases stay; while sourcing, bash prints no job
  notices ("[1] 123") into the output.
- The redirections hold for this command only. Background jobs it starts keep *its* FIFOs, so what
  they write later never reaches another command: the agent drains and discards it until they exit,
  and the next command gets new FIFOs (otherwise it reuses them: no writer is left).
- stdin is /dev/null, or a file holding what the caller gave: a command reading stdin never waits.
- `__sandlot_end M` prints "TOKEN M STATUS" on the status pipe (TOKEN is the session's secret, so
  output of the user's own programs there cannot pass for it) and returns STATUS, so `$?` is right
  in the next command. The backslashes keep the user's aliases off these words.

Interrupting (the deadline, or the caller left) works like Ctrl-C in a terminal, which is why the
shell is interactive: SIGINT to the session's process group ends the foreground program and makes
bash drop the rest of the command and read the next line; background jobs ignore SIGINT (bash
starts them so when job control is off). After each SIGINT the agent sends a fresh marker line and
waits for it: only then is the shell known to read lines again, so no later signal can cut a
command's line in half. From the third round on, what the command started (processes below the
shell started since the command began) is killed first: a program that ignores SIGINT ends then,
and bash goes on with the rest of the line (as in a terminal after `kill -9`) until the next
SIGINT. A shell that still does not answer is killed, and the session ends.
"""

import os
import time
from collections import deque

from ..protocol import contract, wire
from . import config, loop, spawn, users
from .errors import OpError, from_os
from .processes import PAUSE_AT, Input, OutputBudget, read_available

START_TIMEOUT = 30.0  # seconds for the shell's login profile (a cold sandbox reads a lot of files)
GRACE = 0.25  # seconds a SIGINT gets before the command's processes are killed (more each round)
ATTEMPTS = 5  # interrupts before the shell itself is given up
KILL_FROM = 2  # the round from which the command's processes are killed before the SIGINT
DRAIN_LIMIT = 1024 * 1024  # output still read from a command's pipes once its shell line ended
MAX_LINGERING = 64  # outputs of finished commands that background jobs still write to, per session
INTERRUPTED = 130  # the exit code of an interrupted command, as bash reports one ended by Ctrl-C
SHELL = ["/bin/bash", "--login", "--noediting", "-i", "-s"]
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _bootstrap(token):
    return ("set +o history; unset HISTFILE MAILCHECK PROMPT_COMMAND; PS0=; PS1=; PS2=\n"
            "__sandlot_end() { builtin local __sandlot_status=$?; "
            "builtin printf '%s %%s %%s\\n' \"$1\" \"$__sandlot_status\"; builtin return $__sandlot_status; }\n"
            "builtin readonly -f __sandlot_end\n") % token


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _ticks():
    """Now, in the unit and clock of a process's start time (/proc/PID/stat field 22)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK)


def _descendants(root):
    """{pid: start ticks} of every process below ``root``."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append((int(name), int(fields[19])))
    found, frontier = {}, [root]
    while frontier:
        for pid, started in children.get(frontier.pop(), ()):
            if pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def _write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _empty_dir(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        _unlink(os.path.join(path, name))


def _first(*futures):
    """A Future done as soon as one of ``futures`` is."""
    done = loop.Future()
    for future in futures:
        future.add_done_callback(lambda _: done.set_result(None))
    return done


class _Output:
    """A command's stdout and stderr FIFOs, forwarded to its client as O and E frames.

    While the command runs the agent holds a write end of each too: a FIFO without writers reads
    as its end (and would keep the loop busy), which is what it is before bash opens it."""

    def __init__(self, conn, fds, writers):
        self.conn, self.fds, self.writers, self.paused = conn, fds, writers, False
        self.budget = OutputBudget()
        self._listen()

    def _listen(self):
        for fd, kind in self.fds.items():
            loop.add_reader(fd, self._on_data, fd, kind)

    def _stop(self):
        for fd in self.fds:
            loop.remove_reader(fd)

    def _on_data(self, fd, kind):
        data = read_available(fd)
        if data is None:
            return
        data = self.budget.take(data)
        if not data:
            return
        self.conn.send_frame(wire.encode(kind, data))
        if self.conn.buffered() > PAUSE_AT and not self.paused:
            # a slow client stops the reading, so the command blocks instead of the agent buffering
            self.paused = True
            self._stop()
            loop.Task(self._resume())

    async def _resume(self):
        try:
            await self.conn.drain()
        except ConnectionError:
            pass
        if self.paused:
            self.paused = False
            self._listen()

    def finish(self):
        """Stop forwarding and send what the FIFOs still hold once the command's line ended.
        Returns the fds that background jobs still hold open for writing."""
        self._stop()
        self.paused = False
        for fd in self.writers:
            os.close(fd)
        held = []
        for fd, kind in self.fds.items():
            left, data = DRAIN_LIMIT, None
            while left > 0:
                data = read_available(fd)
                if not data:
                    break
                left -= len(data)
                if sent := self.budget.take(data):
                    self.conn.send_frame(wire.encode(kind, sent))
            if data != b"":
                held.append(fd)
        return held


class Session:
    def __init__(self, sid, user, envs, popen, control_fd, status_fd, directory, token):
        self.id, self.user, self.envs = sid, user, envs
        self.popen, self.pid = popen, popen.pid
        self.control = Input(control_fd)  # the shell's stdin
        self.status_fd = status_fd
        self.dir = directory
        self.token = token.encode()
        self.created_at = time.time()
        self.markers = {}  # marker -> Future of the status its line ends with
        self.counter = 0
        self.pending = b""  # status output after the last newline
        self.busy = False
        self.turns = deque()  # Futures of exec requests waiting for the shell
        self.fifos = None  # [(path, read fd)] of stdout and stderr, kept while no one else holds them
        self.lingering = deque()  # fds of finished commands' FIFOs that background jobs hold
        self.exited = loop.Future()  # the shell's wait status
        loop.add_reader(status_fd, self._on_status)
        loop.Task(self._wait())

    # ---- the shell ---------------------------------------------------------------------------

    def line(self, text=None):
        """Send ``text`` (a line of shell) and a marker; returns (marker, Future of the status the
        line ends with). Only the marker when ``text`` is None: a sync."""
        self.counter += 1
        marker = str(self.counter)
        future = self.markers[marker.encode()] = loop.Future()
        end = "\\__sandlot_end " + marker + "\n"
        self.control.write(((text + "; " if text else "") + end).encode())
        return marker.encode(), future

    def _on_status(self):
        data = read_available(self.status_fd)
        if data is None:
            return
        if not data:
            loop.remove_reader(self.status_fd)
            return
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()[-4096:]
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == self.token and parts[2].lstrip(b"-").isdigit():
                future = self.markers.pop(parts[1], None)
                if future is not None:
                    future.set_result(int(parts[2]))

    async def _wait(self):
        status = await spawn.wait(self.popen)
        self._kill_all_of_it()  # its background jobs go with it
        loop.remove_reader(self.status_fd)
        os.close(self.status_fd)
        fd = self.control.detach()
        if fd is not None:
            os.close(fd)
        while self.lingering:
            self._close_lingering(self.lingering.popleft())
        for _, fd in self.fifos or ():
            os.close(fd)
        self.fifos = None
        with users.acting_as(self.user):
            _empty_dir(self.dir)
        try:
            with users.acting_as(users.by_uid(0) or self.user):
                os.rmdir(self.dir)
        except OSError:
            pass
        self.exited.set_result(status)

    def _kill_all_of_it(self):
        _kill(_descendants(self.pid))  # those that left its process group too
        try:
            os.killpg(self.pid, 9)
        except OSError:
            pass

    def kill(self):
        """End the shell and everything it started (the rest happens when it is reaped)."""
        self._kill_all_of_it()
        try:
            os.kill(self.pid, 9)
        except OSError:
            pass

    # ---- commands ----------------------------------------------------------------------------

    async def take_turn(self, conn):
        """Wait until the shell is free (commands run in the order they came); False if the client
        left meanwhile."""
        if self.busy:
            turn = loop.Future()
            self.turns.append(turn)
            await conn.hold(_first(turn, self.exited))
            if not turn.done():
                self.turns.remove(turn)
                return False
        if self.exited.done():
            raise OpError("not_found", "session %r has ended" % self.id)
        self.busy = True
        return True

    def next_turn(self):
        self.busy = False
        if self.turns:
            self.busy = True
            self.turns.popleft().set_result(None)

    def _pipes(self):
        """The stdout and stderr FIFOs for the next command: those of the last one, unless a
        background job of it still holds them."""
        if self.fifos is None:
            self.counter += 1
            paths = [os.path.join(self.dir, "%s.%d" % (k, self.counter)) for k in "oe"]
            fds = []
            try:
                with users.acting_as(self.user):
                    for path in paths:
                        os.mkfifo(path, 0o600)
                        fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                self._remove(paths)
                raise from_os(e) from None
            self.fifos = list(zip(paths, fds))
        return self.fifos

    async def run(self, cmd, stdin, timeout_ms, announce, conn):
        command, given = os.path.join(self.dir, "command"), os.path.join(self.dir, "stdin")
        try:
            (out, out_fd), (err, err_fd) = self._pipes()
            with users.acting_as(self.user):
                _write_file(command, cmd.encode())
                if stdin is not None:
                    _write_file(given, stdin)
                writers = [os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC) for path in (out, err)]
        except OSError as e:
            self._remove([command, given])
            raise from_os(e) from None
        if announce:
            conn.send({"start": {"pid": self.pid}})
        output = _Output(conn, {out_fd: wire.STDOUT, err_fd: wire.STDERR}, writers)
        started = _ticks()
        marker, done = self.line("\\builtin source %s <%s >%s 2>%s" % (
            _quote(command), _quote(given if stdin is not None else "/dev/null"), _quote(out), _quote(err)))
        deadline = loop.Future()
        timer = loop.call_later(timeout_ms / 1000, deadline.set_result, None) if timeout_ms else None
        await conn.hold(_first(done, deadline, self.exited))
        if timer is not None:
            timer.cancel()
        interrupted = not done.done() and not self.exited.done()
        if interrupted:
            self.markers.pop(marker, None)
            await self._interrupt(started, done)
        held = output.finish()
        if held:  # a background job writes on: it keeps these, the next command gets new ones
            self._remove([out, err])
            for fd in (out_fd, err_fd):
                if fd in held:
                    self._linger(fd)
                else:
                    os.close(fd)
            self.fifos = None
        self._remove([command, given])
        if done.done():
            exit_code = done.result()
        elif self.exited.done():
            exit_code = spawn.describe(self.exited.result())["exit_code"]
        else:
            exit_code = INTERRUPTED
        return {"exit_code": exit_code, "timed_out": interrupted and deadline.done(),
                "interrupted": interrupted, "shell_exited": self.exited.done()}

    async def _interrupt(self, started, done):
        """Ctrl-C, until the shell reads lines again (see the module doc); kill it if it never does."""
        for attempt in range(ATTEMPTS):
            # A SIGINT that lands while bash forks a program is taken by the child before it execs:
            # the next one ends it. Only then are the command's processes killed (bash goes on with
            # the rest of the line after a program that did not die of SIGINT: the next round's
            # SIGINT stops that).
            if attempt >= KILL_FROM:
                _kill([pid for pid, t in _descendants(self.pid).items() if t >= started])
            try:
                os.killpg(self.pid, 2)
            except OSError:
                return
            marker, synced = self.line()
            timer = loop.Future()
            handle = loop.call_later(GRACE * (attempt + 1), timer.set_result, None)
            await _first(synced, self.exited, timer)
            handle.cancel()
            if synced.done() or self.exited.done():
                return
            self.markers.pop(marker, None)
        self.kill()
        await self.exited

    def _remove(self, paths):
        with users.acting_as(self.user):
            for path in paths:
                _unlink(path)

    def _linger(self, fd):
        """Drain and drop what background jobs write to a finished command's FIFO, until they end."""
        self.lingering.append(fd)
        loop.add_reader(fd, self._on_lingering, fd)
        if len(self.lingering) > MAX_LINGERING:  # their writes fail from now on (EPIPE)
            self._close_lingering(self.lingering.popleft())

    def _on_lingering(self, fd):
        if read_available(fd) == b"":
            self.lingering.remove(fd)
            self._close_lingering(fd)

    @staticmethod
    def _close_lingering(fd):
        loop.remove_reader(fd)
        os.close(fd)

    def info(self):
        try:
            with users.acting_as(self.user):
                cwd = os.readlink("/proc/%d/cwd" % self.pid)
        except OSError:
            cwd = None
        return {"id": self.id, "user": self.user.name, "pid": self.pid, "cwd": cwd, "envs": self.envs,
                "created_at": self.created_at, "busy": self.busy}


def _make_dir(sid, user):
    root = os.path.join(config.run_dir, contract.SESSIONS_DIR_NAME)
    path = os.path.join(root, sid)
    with users.acting_as(users.by_uid(0) or user):
        try:
            os.mkdir(root, 0o711)
        except FileExistsError:
            pass
        _empty_dir(path)  # what an ended session of that id may have left
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        os.mkdir(path, 0o700)
        os.chown(path, user.uid, user.gid)
    return path


async def start(sid, user, cwd, envs):
    """A session's shell, once its login profile has run."""
    try:
        directory = _make_dir(sid, user)
    except OSError as e:
        raise from_os(e) from None
    env = user.environment()
    env.update(config.settings.envs)
    env.update(envs)
    control_r, control_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        popen = spawn.popen(SHELL, user, cwd, env, control_r, status_w, spawn.DEVNULL)
    except BaseException:
        for fd in (control_w, status_r):
            os.close(fd)
        raise
    finally:
        os.close(control_r)
        os.close(status_w)
    os.set_blocking(control_w, False)
    os.set_blocking(status_r, False)
    token = os.urandom(12).hex()
    session = Session(sid, user, envs, popen, control_w, status_r, directory, token)
    session.control.write(_bootstrap(token).encode())
    _, ready = session.line()
    timer = loop.Future()
    handle = loop.call_later(START_TIMEOUT, timer.set_result, None)
    await _first(ready, session.exited, timer)
    handle.cancel()
    if not ready.done():
        session.kill()
        await session.exited
        raise OpError("failed_precondition", "the session's shell (%s) did not start" % SHELL[0])
    return session
