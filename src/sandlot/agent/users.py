"""The sandbox's users: lookup, and acting with a user's file permissions."""

import os
import pwd

from . import config, libc
from .errors import OpError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class User:
    __slots__ = ("name", "uid", "gid", "home", "shell")

    def __init__(self, pw):
        self.name, self.uid, self.gid = pw.pw_name, pw.pw_uid, pw.pw_gid
        self.home, self.shell = pw.pw_dir or "/", pw.pw_shell or "/bin/sh"

    def resolve(self, path):
        """An absolute, normalized path; relative ones (and ``~``) are relative to the home."""
        if path == "~" or path.startswith("~/"):
            path = self.home + path[1:]
        return os.path.normpath(os.path.join(self.home, path))

    def environment(self):
        """The variables a login gives this user; sandbox-wide and request envs go on top."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell,
                "PATH": DEFAULT_PATH}


def lookup(name=None):
    """The named user, or the sandbox's default user for an absent or empty name."""
    name = name or config.settings.default_user
    if not isinstance(name, str):
        raise OpError("invalid_argument", "user must be a string")
    try:
        return User(pwd.getpwnam(name))
    except KeyError:
        raise OpError("unauthenticated", "user '%s' does not exist" % name) from None


def by_uid(uid):
    try:
        return User(pwd.getpwuid(uid))
    except KeyError:
        return None


def _setgroups_allowed():
    # A user namespace with setgroups "deny" (the sandbox's) refuses setgroups(2) even to its root;
    # children then keep the agent's empty supplementary group list.
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


SETGROUPS_ALLOWED = _setgroups_allowed()


def identity(user):
    """subprocess.Popen arguments that make a child run as ``user``."""
    if user.uid == os.geteuid() and user.gid == os.getegid():
        return {}  # no switch keeps Popen on its fast vfork path
    kwargs = {"user": user.uid, "group": user.gid}
    if SETGROUPS_ALLOWED:
        kwargs["extra_groups"] = os.getgrouplist(user.name, user.gid)
    return kwargs


class acting_as:
    """Run the enclosed file operations with ``user``'s permissions; files created belong to it.

    setfsuid/setfsgid change only the identity used for file access, and only for this thread. A
    switch away from fsuid 0 drops CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN... from the effective
    set and the switch back restores them from the permitted set, so root's powers come back after.
    The block must not await (another request would run with this identity) and must not enter
    another acting_as (the inner one restores the agent's identity, not the outer one's).
    A class, not contextlib.contextmanager: contextlib and collections are ~3.5 ms of imports at
    the agent's start.
    """

    __slots__ = ("user", "saved")

    def __init__(self, user):
        self.user, self.saved = user, None

    def __enter__(self):
        euid, egid = os.geteuid(), os.getegid()
        if self.user.uid == euid and self.user.gid == egid:
            return
        self.saved = (euid, egid)
        libc.setfsgid(self.user.gid)
        libc.setfsuid(self.user.uid)

    def __exit__(self, *exc):
        if self.saved is not None:
            euid, egid = self.saved
            self.saved = None
            libc.setfsuid(euid)
            libc.setfsgid(egid)
