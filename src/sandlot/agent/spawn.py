"""Starting child processes, waiting for them, and describing how they ended (like Go's envd).

A process for the agent's own user (the default user's commands), with no code to run in the child,
is started with os.posix_spawn: no import of subprocess, whose modules (signal's enums, locale, re,
threading: ~12 ms, ~17 ms while a create is being answered) each sandbox's first command waited
for. Others (another user, a terminal to take, the no-subprocess filter) go through subprocess.
"""

import _signal as signal  # signal.py only adds enums to it
import errno
import os

from . import children, config, loop, users
from .errors import OpError

DEVNULL = -3  # subprocess.DEVNULL's value: a stdio of /dev/null
# what a child gets back as default: the interpreter ignores them, and ignored signals stay
# ignored across exec (subprocess's restore_signals does the same)
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


_START_DIR = os.getcwd()  # the agent's own working directory ("/" in a sandbox), between spawns


class Spawned:
    """A child started with posix_spawn: what the agent uses of a subprocess.Popen."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

_no_fork = None  # the no-subprocess filter's loader (agent/nofork.py), read on first use


def restriction():
    """What to load into a process started for the sandbox (None: nothing)."""
    global _no_fork
    if config.settings.process_filter and _no_fork is None:
        from . import nofork

        _no_fork = nofork.loader(config.settings.process_filter)
    return _no_fork


def popen(argv, user, cwd, env, stdin, stdout, stderr, preexec_fn=None, restricted=True):
    """Start ``argv`` as ``user`` in a new session (its own process group, no controlling tty).
    ``restricted``: under the sandbox's no-subprocess filter, if it has one (sandlot's own helpers
    are not)."""
    restrict = restriction() if restricted else None
    if restrict is not None:
        first = preexec_fn

        def preexec_fn():  # a function in the child forces a full fork: only with the filter
            if first is not None:
                first()
            restrict()
    try:
        # The child changes directory before it switches user: with the agent's file identity set to
        # the user's meanwhile, that chdir is checked (and allowed) as it would be for the user.
        identity = users.identity(user)
        # and stdio above 0-2: the dup2s into 0-2 would overwrite one another otherwise
        stdio = (stdin, stdout, stderr)
        fast = preexec_fn is None and not identity and all(fd > 2 for fd in stdio if fd != DEVNULL)
        if not fast:
            import subprocess  # here, not as the user below: the stdlib may not be theirs to read
        with users.acting_as(user):
            if fast:
                proc = _posix_spawn(argv, cwd, env, stdio)
            else:
                proc = subprocess.Popen(
                    argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                    start_new_session=True, preexec_fn=preexec_fn, **identity)
        children.started.add(proc.pid)
        _oom_first(proc.pid)
        return proc
    except FileNotFoundError as e:
        what = "cwd '%s'" % cwd if e.filename == cwd else "'%s'" % argv[0]
        raise OpError("invalid_argument", "cannot start process: %s does not exist" % what) from None
    except PermissionError as e:
        raise OpError("permission_denied", "cannot start process: %s" % e) from None
    except OSError as e:
        raise OpError("invalid_argument", "cannot start process: %s" % e) from None


def _posix_spawn(argv, cwd, env, stdio):
    """Start ``argv`` as subprocess.Popen would here (its PATH search in ``env``, a new session,
    stdio dup'd to 0-2, no other fd inherited, SIGPIPE and SIGXFSZ back to default), in ``cwd``.
    The agent enters ``cwd`` for the spawn and comes back: posix_spawn has no chdir of its own in
    Python, and the agent is single-threaded and uses no relative path. One difference: glibc's
    posix_spawn sets its two internal signals (32, 33: thread cancellation, setxid) to ignored in
    the child, and exec keeps that; glibc and musl programs install their own handlers for them
    when they use them."""
    actions = []
    for target, fd in enumerate(stdio):
        if fd == DEVNULL:
            actions.append((os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_RDONLY if target == 0 else os.O_RDWR, 0))
        else:
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
    # No fd but its stdio reaches the child without a close list (subprocess's close_fds): every
    # fd of the agent's is close-on-exec (main.py marks those it inherits, Python makes its own so,
    # and fds clients pass arrive so). A close list cost ~40 us per command under seccomp.
    os.chdir(cwd)
    try:
        return Spawned(_spawn_in_path(argv, env, actions))
    finally:
        os.chdir(_START_DIR)


def _spawn_in_path(argv, env, actions):
    """posix_spawn of argv[0], searched in env's PATH as execvpe does (the first that runs; a
    found but refused one is reported if none runs)."""
    program = argv[0]
    candidates = [program] if os.path.dirname(program) else \
        [os.path.join(d, program) for d in os.get_exec_path(env)]
    refused = None
    for path in candidates:
        if len(candidates) > 1 and not os.path.exists(path):
            continue
        try:
            return os.posix_spawn(path, argv, env, file_actions=actions, setsid=True,
                                  setsigdef=_RESTORED_SIGNALS)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as e:
            refused = refused or e
    if refused is not None:
        raise refused
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


OOM_SCORE_ADJ = 500  # half the sandbox's memory limit added to a process's badness


def _oom_first(pid):
    """Under the sandbox's memory pressure its own processes go first, the agent (at 0) last:
    the OOM killer picks the highest score. Raising a score needs no privilege; lowering one below
    the agent's would need CAP_SYS_RESOURCE on the host (which even the server may lack), so a
    process that lowers its own back to 0 only competes with the agent on memory use."""
    try:
        with open("/proc/%d/oom_score_adj" % pid, "w") as f:
            f.write(str(OOM_SCORE_ADJ))
    except OSError:
        pass  # it has already exited


def cwd_for(cwd, user):
    if cwd:
        return user.resolve(cwd)
    return user.home if os.path.isdir(user.home) else "/"


async def wait(proc):
    """Wait for ``proc`` to exit without blocking the loop or a thread; return its wait status."""
    fd = os.pidfd_open(proc.pid)
    try:
        await loop.wait_readable(fd)
    finally:
        os.close(fd)
    _, status = os.waitpid(proc.pid, 0)  # it has exited: this reaps without blocking
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
    children.started.discard(proc.pid)
    children.reap_orphans()  # orphans that exited while this child stood first in the sweep
    return status


def describe(status):
    """The END payload for a wait status: Go's os.ProcessState conventions, as envd reports them."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = (signal.strsignal(sig) or "signal %d" % sig).lower()
        if os.WCOREDUMP(status):
            name += " (core dumped)"
        return {"exit_code": -1, "exited": False, "status": "signal: " + name, "error": "signal: " + name}
    code = os.WEXITSTATUS(status)
    end = {"exit_code": code, "exited": True, "status": "exit status %d" % code}
    if code:
        end["error"] = end["status"]  # Go's exec.ExitError text, which envd reports as the error
    return end


def signal_group(pid, sig):
    """Signal the process group a child leads (its whole command tree), or the child alone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        os.kill(pid, sig)
