"""File operations with a sandbox user's permissions, and the ENTRY dicts they answer with.

Everything between ``users.acting_as`` and its end is synchronous: the identity is per thread,
and an await inside would lend it to other requests. Streams open their file as the user, then
move the data without it.
"""

import errno
import grp
import os
import pwd
import stat as statmod
import sys

from ..protocol import wire
from . import config, users
from .errors import OpError, field, from_os

STAGING_PREFIX = ".sandlot-upload-"  # watch streams do not report these
METADATA_PREFIX = "user.e2b."  # E2B's X-Metadata-<key> headers, stored as xattrs
_TYPES = {statmod.S_IFREG: "file", statmod.S_IFDIR: "dir", statmod.S_IFLNK: "symlink"}


class _Names:
    """uid/gid -> name, cached for one request (a listing asks for the same few many times)."""

    def __init__(self):
        self.cache = {}

    def owner(self, uid):
        key = ("u", uid)
        if key not in self.cache:
            try:
                self.cache[key] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.cache[key] = str(uid)
        return self.cache[key]

    def group(self, gid):
        key = ("g", gid)
        if key not in self.cache:
            try:
                self.cache[key] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.cache[key] = str(gid)
        return self.cache[key]


def entry(path, names=None):
    """The ENTRY of ``path``. A symlink is followed: the target's type and details, plus
    ``symlink_target``; a dangling one is reported as itself, with type "symlink"."""
    names = names or _Names()
    info = os.lstat(path)
    target = None
    if statmod.S_ISLNK(info.st_mode):
        target = os.path.realpath(path)
        try:
            info = os.stat(path)
        except OSError:
            pass
    return {
        "name": os.path.basename(path) or "/",
        "type": _TYPES.get(statmod.S_IFMT(info.st_mode), "other"),
        "path": path,
        "size": info.st_size,
        "mode": statmod.S_IMODE(info.st_mode) & 0o777,
        "permissions": statmod.filemode(info.st_mode),
        "owner": names.owner(info.st_uid),
        "group": names.group(info.st_gid),
        "mtime": info.st_mtime,
        "symlink_target": target,
        "metadata": metadata(path),
    }


def metadata(path):
    try:
        keys = [k for k in os.listxattr(path) if k.startswith(METADATA_PREFIX)]
        return {k[len(METADATA_PREFIX):]: os.getxattr(path, k).decode("utf-8", "replace") for k in keys}
    except OSError:  # no xattr support there, or a dangling symlink
        return {}


def _set_metadata(fd, values):
    """Replace the file's user.e2b.* xattrs with ``values`` (keys lower-cased, as E2B does)."""
    try:
        for key in os.listxattr(fd):
            if key.startswith(METADATA_PREFIX):
                os.removexattr(fd, key)
        for key, value in values.items():
            os.setxattr(fd, METADATA_PREFIX + key.lower(), value.encode())
    except OSError as e:
        if values:
            raise OpError("failed_precondition", "cannot store metadata: %s" % e.strerror) from None


def _stat_entry(path):
    try:
        return entry(path)
    except OSError as e:
        raise from_os(e, path) from None


def _target(req, name="path"):
    user = users.lookup(field(req, "user", str))
    return user, user.resolve(field(req, name, str, required=True))


def _not_regular(path):
    return OpError("invalid_argument", "path '%s' is not a regular file" % path)


def _open_regular(path, flags, mode=0o644):
    """Open ``path`` for writing, refusing anything but a regular file without blocking: opening a
    FIFO blocks until a reader comes (and would stall the whole agent), a terminal could become the
    agent's controlling one, and writing to a device is no file upload."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY, mode)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO no one reads, or a socket
            raise _not_regular(path) from None
        raise
    if not statmod.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path)
    return fd


def _make_parents(path):
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError:
        raise OpError("invalid_argument", "a parent of '%s' is not a directory" % path) from None
    except OSError as e:
        raise from_os(e, parent) from None


def _make_parents_for(user, path):
    """Missing parents of a file `user` writes, made as E2B's envd makes them: even where `user`
    could not create them (`/0/a.txt`), and handed to `user`, provided the sandbox lets its user
    become root anyway (allow_sudo); otherwise with the user's own permissions, as before. The
    root walk follows no symlink: a link on the way leaves the user's own permissions to decide."""
    with users.acting_as(user):
        try:
            _make_parents(path)
            return
        except OpError as e:
            refused = e
            if e.code != "permission_denied" or not config.settings.allow_sudo or user.uid == 0:
                raise
    parts = [p for p in os.path.dirname(path).split("/") if p]
    with users.acting_as(users.lookup("root")):
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in parts:
                try:
                    nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(name, 0o755, dir_fd=fd)
                    os.chown(name, user.uid, user.gid, dir_fd=fd, follow_symlinks=False)
                    nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError:  # a symlink or a file on the way
                    raise refused from None
                os.close(fd)
                fd = nxt
        except OSError as e:
            raise from_os(e, os.path.dirname(path)) from None
        finally:
            os.close(fd)


def _publish_watch_events():
    # Callers poll watches right after a change returns (E2B semantics): hand the events the kernel
    # has queued to the watch streams before this reply goes out. Not while acting as a user: the
    # watchers act as theirs.
    watch = sys.modules.get(__package__ + ".watch")
    if watch is not None:
        watch.flush_all()


# ---- ops --------------------------------------------------------------------------------------


def stat(req, conn):
    user, path = _target(req)
    with users.acting_as(user):
        return {"entry": _stat_entry(path)}


def list_dir(req, conn):
    user, path = _target(req)
    depth = field(req, "depth", int, 0) or 1
    if depth < 0:
        raise OpError("invalid_argument", "depth must not be negative")
    with users.acting_as(user):
        if _stat_entry(path)["type"] != "dir":
            raise OpError("invalid_argument", "path '%s' is not a directory" % path)
        entries = []
        try:
            _walk(path, depth, entries, _Names())
        except OSError as e:
            raise from_os(e, path) from None
    return {"entries": entries}


def _walk(directory, depth, entries, names):
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        try:
            e = entry(path, names)
        except FileNotFoundError:  # removed while we list
            continue
        if len(entries) >= config.settings.max_list_entries:
            # one listing must not hold the agent (and the reply's memory) for a whole disk
            raise OpError("resource_exhausted", "more than %d entries under the listed path: "
                          "list with a smaller depth" % config.settings.max_list_entries)
        entries.append(e)
        if depth > 1 and e["type"] == "dir" and e["symlink_target"] is None:
            try:
                _walk(path, depth - 1, entries, names)
            except PermissionError:
                pass  # listed, but its contents are not the user's to see


def mkdir(req, conn):
    user, path = _target(req)
    with users.acting_as(user):
        try:
            os.makedirs(path)
        except FileExistsError:
            if os.path.isdir(path):
                raise OpError("already_exists", "directory '%s' already exists" % path) from None
            raise OpError("invalid_argument", "path '%s' exists and is not a directory" % path) from None
        except OSError as e:
            raise from_os(e, path) from None
        made = _stat_entry(path)
    _publish_watch_events()
    return {"entry": made}


def move(req, conn):
    import shutil  # here, not where it is needed: the user may not be able to read the stdlib

    user, source = _target(req, "source")
    destination = user.resolve(field(req, "destination", str, required=True))
    with users.acting_as(user):
        try:
            os.lstat(source)
            _make_parents(destination)
            try:
                os.rename(source, destination)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                shutil.move(source, destination)  # another filesystem: copy, then delete
        except OSError as e:
            raise from_os(e, e.filename or source) from None
        moved = _stat_entry(destination)
    _publish_watch_events()
    return {"entry": moved}


def remove(req, conn):
    import shutil  # here, not where it is needed: the user may not be able to read the stdlib

    user, path = _target(req)
    with users.acting_as(user):
        try:
            if statmod.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass  # already gone is what was asked for
        except OSError as e:
            raise from_os(e, e.filename or path) from None
    _publish_watch_events()
    return {}


def promised_length(info):
    """The bytes a read of this open file will send, told before the first (the server's
    Content-Length), or None: read to the end. Only a size that storage backs is promised:
    procfs and sysfs files report 0 or a page whatever they hold, and their blocks are 0; a sparse
    file is read to its end too."""
    return info.st_size if 0 < info.st_size <= info.st_blocks * 512 else None


async def read(req, conn):
    user, path = _target(req)
    with users.acting_as(user):
        try:
            # O_NONBLOCK: opening a FIFO must not hang the agent (it is refused below); O_NOCTTY: nor
            # may a terminal become the agent's
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            raise from_os(e, path) from None
    try:
        info = os.fstat(fd)
        if statmod.S_ISDIR(info.st_mode):
            raise OpError("invalid_argument", "path '%s' is a directory" % path)
        if not statmod.S_ISREG(info.st_mode):
            raise OpError("invalid_argument", "path '%s' is not a regular file" % path)
        length = promised_length(info)
        with users.acting_as(user):
            conn.send({"entry": _stat_entry(path), "length": length})
        left = length
        while left is None or left > 0:
            data = os.read(fd, wire.CHUNK if left is None else min(wire.CHUNK, left))
            if not data:
                if left:
                    raise OpError("failed_precondition", "%s became shorter while it was read" % path)
                break
            if left is not None:
                left -= len(data)
            conn.send_frame(wire.head(wire.DATA, len(data)), data)
            await conn.drain()
        conn.send_frame(wire.encode(wire.END, b""))
    finally:
        os.close(fd)


async def write(req, conn):
    """Write a file from D frames, without ever losing data: replacing an existing file goes
    through a hidden staging file next to it, and the file is overwritten only once all the data
    arrived; a new file that breaks off is removed. Appends write in place."""
    user, path = _target(req)
    values = field(req, "metadata", dict)
    if values is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise OpError("invalid_argument", "metadata must map strings to strings")
    append = field(req, "append", bool, False)
    _make_parents_for(user, path)
    with users.acting_as(user):
        if os.path.isdir(path):
            raise OpError("invalid_argument", "path '%s' is a directory" % path)
        try:  # refused before any data is taken (the open below checks again: it may change meanwhile)
            if not statmod.S_ISREG(os.stat(path).st_mode):
                raise _not_regular(path)
        except OSError:
            pass  # missing (or a dangling link): written anew
        staged = None
        if append:
            target, flags = path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_APPEND
        elif os.path.lexists(path):
            staged = target = os.path.join(os.path.dirname(path), STAGING_PREFIX + os.urandom(6).hex())
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC  # read back by _overwrite_from
        else:
            target, flags = path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = _open_regular(target, flags)
        except OSError as e:
            raise from_os(e, path) from None
    done = False
    try:
        while True:
            kind, payload = await conn.read_frame()
            if kind == wire.DATA:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
            elif kind == wire.END:
                break
            elif kind is None:
                raise ConnectionError("the client left before the end of the data")
            else:
                raise OpError("invalid_argument", "files.write takes D frames and one Z frame")
        with users.acting_as(user):
            if staged:
                _overwrite_from(fd, path, values or {})
            elif values is not None or not append:  # an append without metadata keeps the file's
                _set_metadata(fd, values or {})
        done = True
    except OSError as e:
        raise from_os(e, path) from None
    finally:
        os.close(fd)
        if staged or not (done or append):
            with users.acting_as(user):
                try:
                    os.unlink(target)
                except OSError:
                    pass
    _publish_watch_events()
    with users.acting_as(user):
        return {"entry": _stat_entry(path)}


def _overwrite_from(fd, path, values):
    """Overwrite ``path`` in place with the staged file ``fd`` (same inode, links and watchers;
    watchers see a write, as with a plain overwrite; a symlink is written through)."""
    dest = _open_regular(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        size, offset = os.fstat(fd).st_size, 0
        while offset < size:
            copied = os.copy_file_range(fd, dest, size - offset, offset, offset)
            if not copied:
                break
            offset += copied
        _set_metadata(dest, values)
    finally:
        os.close(dest)
