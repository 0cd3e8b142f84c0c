"""The ``sudo`` op: run a command for the in-sandbox sudo shim, as root or another user.

The shim passes its own stdin, stdout and stderr (SCM_RIGHTS), so the command reads and writes
the caller's terminal or pipes directly; the agent relays the signals the shim forwards and
answers with the exit status. no_new_privs stays set in the sandbox: nothing setuid is needed.
"""

import _signal as signal  # signal.py only adds enums to it
import os

from ..protocol import wire
from . import config, loop, spawn, users
from .errors import OpError, field


async def sudo(req, conn):
    if not config.settings.allow_sudo:
        raise OpError("permission_denied", "sudo is not allowed in this sandbox")
    if config.settings.process_filter:  # the agent would start a process for a sandbox process
        raise OpError("permission_denied", "sudo is not allowed: this sandbox may not create processes")
    argv = field(req, "argv", list, required=True)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise OpError("invalid_argument", "argv must be a non-empty list of strings")
    if len(conn.fds) != 3:
        raise OpError("invalid_argument", "sudo needs the caller's stdin, stdout and stderr")
    user = users.lookup(field(req, "user", str) or "root")
    envs = field(req, "envs", dict, {})
    caller = users.by_uid(conn.peer_uid)
    env = user.environment()
    env.update(config.settings.envs)
    env.update({k: v for k, v in envs.items() if isinstance(v, str)})
    env.update(SUDO_COMMAND=" ".join(argv), SUDO_UID=str(conn.peer_uid),
               SUDO_GID=str(caller.gid if caller else conn.peer_uid),
               SUDO_USER=caller.name if caller else str(conn.peer_uid))
    cwd = spawn.cwd_for(field(req, "cwd", str), user)
    if not os.path.isdir(cwd):
        cwd = "/"
    stdin, stdout, stderr = conn.fds
    proc = spawn.popen(argv, user, cwd, env, stdin, stdout, stderr)
    for fd in conn.fds:
        os.close(fd)  # the command holds them now
    del conn.fds[:]
    exited = loop.Task(spawn.wait(proc))
    try:
        await _relay_signals(proc, conn, exited)
    finally:
        if not exited.done():
            # The shim went away (or the agent stops): hang up on the command, as a closing
            # terminal would; commands started under nohup keep running. Reaped when they end.
            spawn.signal_group(proc.pid, signal.SIGHUP)
    if not exited.done():
        return None
    status = exited.result()
    return {"exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0}


async def _relay_signals(proc, conn, exited):
    """Forward {"signal": N} frames from the shim to the command until it exits."""
    while True:
        frame = loop.Task(conn.read_frame())
        await loop.first(exited, frame)
        if exited.done():
            frame.cancel()
            return
        kind, payload = frame.result()
        if kind is None:
            return
        sig = wire.decode_json(payload).get("signal") if kind == wire.JSON else None
        if isinstance(sig, int) and 0 < sig < signal.NSIG:
            spawn.signal_group(proc.pid, sig)
