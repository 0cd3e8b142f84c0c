"""files.watch: a directory's changes as a stream of events, from inotify (through ctypes).

Event types follow fsnotify, which envd uses: create (also a move in), write, remove, rename (a
move out), chmod. A recursive watch adds every subdirectory, and each new one as it appears.
"""

import ctypes
import os
import struct

from . import loop, users
from .errors import OpError, field, from_os
from .files import STAGING_PREFIX, entry

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_IGNORED, IN_ONLYDIR, IN_ISDIR = 0x8000, 0x01000000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
MASK = (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
TYPES = ((IN_CREATE | IN_MOVED_TO, "create"), (IN_MODIFY, "write"), (IN_DELETE, "remove"),
         (IN_MOVED_FROM, "rename"), (IN_ATTRIB, "chmod"))
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
_watchers = set()


def _check(result, path):
    if result < 0:
        err = ctypes.get_errno()
        raise from_os(OSError(err, os.strerror(err)), path)
    return result


class Watcher:
    """One watch stream's inotify instance. Directories are added and entries read with the
    permissions of the user who asked."""

    def __init__(self, root, recursive, include_entry, user, conn):
        self.root, self.recursive, self.include_entry, self.conn = root, recursive, include_entry, conn
        self.user = user
        self.dirs = {}  # watch descriptor -> directory relative to root ("" for root)
        self.gone = loop.Future()  # done when root goes away
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), root)

    def close(self):
        os.close(self.fd)

    def add(self, rel):
        """Watch root/rel (and, if recursive, what is below it); return the entries found below,
        each with whether it is a file with data in it."""
        path = os.path.join(self.root, rel) if rel else self.root
        wd = _check(_libc.inotify_add_watch(self.fd, os.fsencode(path), MASK), path)
        self.dirs[wd] = rel
        found = []
        if self.recursive:
            try:
                with os.scandir(path) as it:
                    children = [(e.name, e.is_dir(follow_symlinks=False),
                                 e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_size > 0)
                                for e in it]
            except OSError:
                return found  # gone again, or not ours to read
            for name, is_dir, written in children:
                child = os.path.join(rel, name) if rel else name
                found.append((child, written))
                if is_dir:
                    try:
                        found.extend(self.add(child))
                    except OpError:
                        pass
        return found

    def _forget(self, rel):
        """Stop watching a directory moved out of the tree, and everything below it."""
        for wd, d in list(self.dirs.items()):
            if d == rel or d.startswith(rel + "/"):
                _libc.inotify_rm_watch(self.fd, wd)
                del self.dirs[wd]

    def flush(self):
        """Send every event the kernel has queued."""
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(buf):
                wd, mask, _, size = _EVENT.unpack_from(buf, offset)
                name = buf[offset + 16:offset + 16 + size].rstrip(b"\0").decode("utf-8", "surrogateescape")
                offset += 16 + size
                self._handle(wd, mask, name)

    def _handle(self, wd, mask, name):
        rel_dir = self.dirs.get(wd)
        if rel_dir is None:
            return
        if mask & IN_IGNORED or (rel_dir == "" and mask & (IN_DELETE_SELF | IN_MOVE_SELF)):
            del self.dirs[wd]
            if rel_dir == "" and not self.gone.done():
                self.gone.set_result(None)
            return
        if not name:  # *_SELF of a subdirectory: its parent's watch reports it
            return
        rel = os.path.join(rel_dir, name) if rel_dir else name
        for bit, kind in TYPES:
            if mask & bit:
                self._send(rel, kind)
        if self.recursive and mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO):
                try:
                    with users.acting_as(self.user):
                        created = self.add(rel)
                except OpError:
                    created = []
                # made before the new directory's watch existed: what a watch there would have
                # reported (a file written in a new directory reads the same at any depth)
                for child, written in created:
                    self._send(child, "create")
                    if written:
                        self._send(child, "write")
            elif mask & IN_MOVED_FROM:
                self._forget(rel)

    def _send(self, rel, kind):
        if os.path.basename(rel).startswith(STAGING_PREFIX):
            return  # an upload in progress; its result shows up under the real name
        event = {"name": rel, "type": kind}
        if self.include_entry:
            try:
                with users.acting_as(self.user):
                    event["entry"] = entry(os.path.join(self.root, rel))
            except OSError:
                pass
        self.conn.send({"event": event})


def flush_all():
    for watcher in _watchers:
        watcher.flush()


async def watch(req, conn):
    user = users.lookup(field(req, "user", str))
    root = user.resolve(field(req, "path", str, required=True))
    recursive = field(req, "recursive", bool, False)
    include_entry = field(req, "include_entry", bool, False)
    with users.acting_as(user):
        try:
            os.stat(root)
        except OSError as e:
            raise from_os(e, root) from None
        if not os.path.isdir(root):
            raise OpError("invalid_argument", "path '%s' is not a directory" % root)
        watcher = Watcher(root, recursive, include_entry, user, conn)
        try:
            watcher.add("")
        except BaseException:
            watcher.close()
            raise
    loop.add_reader(watcher.fd, watcher.flush)
    _watchers.add(watcher)
    try:
        conn.send({"start": {}})
        await conn.hold(watcher.gone)
    finally:
        _watchers.discard(watcher)
        loop.remove_reader(watcher.fd)
        watcher.close()
