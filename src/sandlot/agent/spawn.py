"""Starting child processes, waiting for them, and describing how they ended (like Go's envd)."""

import os
import signal
import subprocess

from . import children, loop, users
from .errors import OpError


def popen(argv, user, cwd, env, stdin, stdout, stderr, preexec_fn=None):
    """Start ``argv`` as ``user`` in a new session (its own process group, no controlling tty)."""
    try:
        # The child changes directory before it switches user: with the agent's file identity set to
        # the user's meanwhile, that chdir is checked (and allowed) as it would be for the user.
        with users.acting_as(user):
            proc = subprocess.Popen(
                argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                start_new_session=True, preexec_fn=preexec_fn, **users.identity(user))
        children.started.add(proc.pid)
        return proc
    except FileNotFoundError as e:
        what = "cwd '%s'" % cwd if e.filename == cwd else "'%s'" % argv[0]
        raise OpError("invalid_argument", "cannot start process: %s does not exist" % what) from None
    except PermissionError as e:
        raise OpError("permission_denied", "cannot start process: %s" % e) from None
    except OSError as e:
        raise OpError("invalid_argument", "cannot start process: %s" % e) from None


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
