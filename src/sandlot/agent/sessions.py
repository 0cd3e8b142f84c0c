"""Sessions: named shells that keep their state from one command to the next (session.* ops; how a
shell runs commands is agent/shell.py). Loaded on first use: an agent without sessions never
imports it.
"""

import binascii
import os

from . import config, shell, spawn, users
from .errors import OpError, field

MAX_SESSIONS = 64
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

_sessions = {}  # id -> shell.Session
_starting = set()  # ids of sessions whose shell is starting


def _check_id(sid):
    if not (0 < len(sid) <= 64 and set(sid) <= _ID_CHARS and sid[0] not in ".-"):
        raise OpError("invalid_argument", "a session id is 1 to 64 letters, digits, '_', '.' or '-', "
                                          "not starting with '.' or '-'")


def _lookup(req):
    sid = field(req, "id", str, required=True)
    session = _sessions.get(sid)
    if session is None:
        raise OpError("not_found", "session %r not found" % sid)
    return session


def _forget(session):
    if _sessions.get(session.id) is session:
        del _sessions[session.id]


async def create(req, conn):
    sid = field(req, "id", str) or "s" + os.urandom(6).hex()
    _check_id(sid)
    user = users.lookup(field(req, "user", str))
    envs = field(req, "envs", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
        raise OpError("invalid_argument", "envs must map strings to strings")
    cwd = spawn.cwd_for(field(req, "cwd", str), user)
    if config.settings.process_filter:
        raise OpError("permission_denied", "sessions run programs: this sandbox may not create processes")
    if sid in _sessions or sid in _starting:
        raise OpError("already_exists", "session %r already exists" % sid)
    if len(_sessions) + len(_starting) >= MAX_SESSIONS:
        raise OpError("resource_exhausted", "a sandbox has at most %d sessions" % MAX_SESSIONS)
    _starting.add(sid)
    try:
        session = await shell.start(sid, user, cwd, envs)
    finally:
        _starting.discard(sid)
    _sessions[sid] = session
    session.exited.add_done_callback(lambda _: _forget(session))
    return {"session": session.info()}


async def exec_command(req, conn):
    session = _lookup(req)
    cmd = field(req, "cmd", str, required=True)
    data = field(req, "stdin", str)
    timeout_ms = field(req, "timeout_ms", int, 0)
    if timeout_ms < 0:
        raise OpError("invalid_argument", "timeout_ms must not be negative")
    try:
        stdin = binascii.a2b_base64(data) if data is not None else None
    except (binascii.Error, ValueError):
        raise OpError("invalid_argument", "stdin must be base64") from None
    if not await session.take_turn(conn):
        return None  # the client left while waiting
    try:
        end = await session.run(cmd, stdin, timeout_ms, field(req, "announce", bool, False), conn)
    finally:
        session.next_turn()
    return {"end": end}


def get(req, conn):
    return {"session": _lookup(req).info()}


def list_sessions(req, conn):
    return {"sessions": [s.info() for s in _sessions.values()]}


async def delete(req, conn):
    session = _lookup(req)
    session.kill()
    await session.exited
    return {}


def kill_all():
    for session in list(_sessions.values()):
        session.kill()
