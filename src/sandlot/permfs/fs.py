"""The permission filesystem's FUSE operations: a passthrough to each workspace in which every
request is decided by the workspace's rules (sandlot/permissions.py) on the path it was made
through. Longer than most modules: it is the one place that maps each FUSE request to its check.

Inodes stand for paths, not files: each path gets its own inode number, so a hard link made before
the rules changed, or a file renamed meanwhile, is always judged by the path the kernel reached it
through. What a level allows:

    lookup, getattr, readdir listing, readlink, xattr reads   view (a directory: see dir_level)
    open for reading, access(R_OK|X_OK)                       read
    open for writing, create, mkdir, symlink, mknod, unlink,  write (on every path the operation
    rmdir, rename, link, setattr, xattr writes                 touches; a renamed directory: every
                                                               path inside it, before and after)

``none`` answers ENOENT, as for a path that does not exist (so creating one is EACCES, as for any
path that may not be written); a level too low for the operation answers EACCES. Denials of
operations on existing paths go to the sandbox's log.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat as S

import pyfuse3
from pyfuse3 import FUSEError

from .. import permissions as P
from ..syscalls import renameat2
from .workspace import Workspace

ROOT = pyfuse3.ROOT_INODE
TIMEOUT = 5.0  # seconds the kernel may cache lookups and attributes; rule changes invalidate them
# names held by a workspace's open directories (~100 bytes each): a sandbox holding many open
# listings of a big directory must not take the daemon's memory, which every workspace shares
MAX_LISTED = 500_000
MAX_RENAMED = 20000  # entries a directory rename checks one by one; past it: EXDEV (mv copies instead)
# O_TRUNC writes too (the kernel passes it to open: libfuse asks for atomic_o_trunc)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
_OPEN_DROP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | getattr(os, "O_DIRECT", 0)
_XATTR_PREFIX = b"user."
# no setuid or setgid: the daemon makes every file as host root, and the sandbox's layer is on the
# host's disk (the mount is nosuid, the layer is not)
_MODE_BITS = 0o1777
log = logging.getLogger("sandlot.permfs")


class Node:
    __slots__ = ("ino", "ws", "path", "lookups")

    def __init__(self, ino: int, ws: Workspace | None, path: str):
        self.ino, self.ws, self.path, self.lookups = ino, ws, path, 0


def _child(path: str, name: bytes) -> str:
    text = os.fsdecode(name)
    return "/" + text if path == "/" else path + "/" + text


def _oserror(e: OSError) -> FUSEError:
    return FUSEError(e.errno or errno.EIO)


class PermFS(pyfuse3.Operations):
    supports_dot_lookup = False

    def __init__(self):
        super().__init__()
        self.nodes: dict[int, Node] = {ROOT: Node(ROOT, None, "")}
        self.nodes[ROOT].lookups = 1
        self.paths: dict[tuple[str, str], int] = {}  # (sandbox, path) -> inode
        self.workspaces: dict[str, Workspace] = {}
        self.files: dict[int, int] = {}  # fh -> fd
        self.file_inodes: dict[int, int] = {}  # fh -> inode
        self.opened: dict[int, int] = {}  # inode -> open file handles
        self.dirs: dict[int, tuple] = {}  # fh -> (workspace, its inode, the names in it) of a listing
        self._next_ino = ROOT + 1
        self._next_fh = 1

    # ---- workspaces (the control socket) ---------------------------------------------------------

    def add(self, ws: Workspace) -> None:
        if ws.id in self.workspaces:
            self.remove(ws.id)
        self.workspaces[ws.id] = ws
        ws.top = self._node(ws, "/").ino
        self.nodes[ws.top].lookups += 1  # held while the workspace exists

    def remove(self, sandbox_id: str) -> list[tuple[int, bytes]]:
        """Drop a workspace; returns the kernel entries to invalidate."""
        ws = self.workspaces.pop(sandbox_id, None)
        if ws is None:
            return []
        stale = self._entries(ws)
        for ino in [n.ino for n in self.nodes.values() if n.ws is ws]:
            del self.nodes[ino]
        for key in [k for k in self.paths if k[0] == sandbox_id]:
            del self.paths[key]
        ws.close()
        return stale

    def set_rules(self, sandbox_id: str, rules: list[dict]) -> tuple[list[int], list[tuple[int, bytes]]]:
        """New rules for a workspace; returns the inodes and entries the kernel must forget."""
        ws = self.workspaces[sandbox_id]
        ws.permissions = P.Permissions([P.Rule.from_json(r) for r in rules])
        return [n.ino for n in self.nodes.values() if n.ws is ws], self._entries(ws)

    def reroot(self, sandbox_id: str, root: str) -> tuple[list[int], list[tuple[int, bytes]]]:
        """Serve a workspace from another directory; returns what the kernel must forget."""
        ws = self.workspaces[sandbox_id]
        ws.reroot(root)
        return [n.ino for n in self.nodes.values() if n.ws is ws], self._entries(ws)

    def _entries(self, ws: Workspace) -> list[tuple[int, bytes]]:
        found = [(ROOT, os.fsencode(ws.id))]
        for node in self.nodes.values():
            if node.ws is ws and node.path != "/":
                parent, _, name = node.path.rpartition("/")
                parent_ino = self.paths.get((ws.id, parent or "/"))
                if parent_ino is not None:
                    found.append((parent_ino, os.fsencode(name)))
        return found

    # ---- inodes ------------------------------------------------------------------------------

    def _node(self, ws: Workspace, path: str) -> Node:
        ino = self.paths.get((ws.id, path))
        if ino is None:
            ino, self._next_ino = self._next_ino, self._next_ino + 1
            self.nodes[ino] = Node(ino, ws, path)
            self.paths[(ws.id, path)] = ino
        return self.nodes[ino]

    def _get(self, inode: int, ctx) -> Node:
        node = self.nodes.get(inode)
        if node is None or node.ws is None or node.path is None:
            raise FUSEError(errno.ENOENT)
        if not node.ws.admits(ctx.uid):
            raise FUSEError(errno.EACCES)
        return node

    def _moved(self, ws: Workspace, old: str, new: str) -> None:
        """Paths below ``old`` now live below ``new`` (a node already at ``new`` is gone)."""
        replaced = self.paths.pop((ws.id, new), None)
        if replaced is not None:
            self.nodes[replaced].path = None
        for node in [n for n in self.nodes.values() if n.ws is ws and n.path is not None
                     and (n.path == old or n.path.startswith(old + "/"))]:
            del self.paths[(ws.id, node.path)]
            node.path = new + node.path[len(old):]
            stale = self.paths.pop((ws.id, node.path), None)
            if stale is not None:
                self.nodes[stale].path = None
            self.paths[(ws.id, node.path)] = node.ino

    async def forget(self, inode_list):
        for inode, count in inode_list:
            node = self.nodes.get(inode)
            if node is None or inode == ROOT:
                continue
            node.lookups -= count
            if node.lookups <= 0:
                del self.nodes[inode]
                if node.path is not None and node.ws is not None and \
                        self.paths.get((node.ws.id, node.path)) == inode:
                    del self.paths[(node.ws.id, node.path)]

    # ---- decisions ---------------------------------------------------------------------------

    @staticmethod
    def _level(ws: Workspace, path: str, st: os.stat_result | None) -> int:
        if st is not None and S.S_ISDIR(st.st_mode):
            return ws.permissions.dir_level(path)
        return ws.permissions.level(path)

    def _need(self, ws: Workspace, path: str, level: int, op: str, ctx, st: os.stat_result | None = None,
              exists: bool = True) -> None:
        """Raise unless ``path`` has at least ``level``: ENOENT if it is invisible and only seeing
        it was asked for, else EACCES. ``exists``: log the denial (a path being made is not)."""
        have = self._level(ws, path, st)
        if have >= level:
            return
        if exists:
            ws.deny(op, path, ctx.pid)
        raise FUSEError(errno.ENOENT if have == P.NONE and level <= P.VIEW else errno.EACCES)

    def _attrs(self, ws: Workspace, node: Node, st: os.stat_result) -> pyfuse3.EntryAttributes:
        # the mode bits show what the level allows (checks are the daemon's: no default_permissions)
        level = self._level(ws, node.path, st)
        mode = st.st_mode
        if level < P.WRITE:
            mode &= ~0o222
        if level < P.READ:
            mode = mode & ~0o777 | (0o555 if S.S_ISDIR(mode) else 0)
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        # a directory's real count is 2 + its subdirectories, hidden ones too: 1, "unknown" (as overlayfs)
        a.st_mode, a.st_nlink, a.st_rdev = mode, 1 if S.S_ISDIR(mode) else st.st_nlink, st.st_rdev
        a.st_uid, a.st_gid = ws.owner
        a.st_size, a.st_blksize, a.st_blocks = st.st_size, st.st_blksize, st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    def _top_attrs(self) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino, a.st_mode, a.st_nlink = ROOT, S.S_IFDIR | 0o711, 2
        a.entry_timeout = a.attr_timeout = TIMEOUT
        return a

    def _stat(self, ws: Workspace, path: str) -> os.stat_result:
        try:
            return ws.lstat(path)
        except OSError as e:
            raise _oserror(e) from None

    def _entry(self, ws: Workspace, path: str, ctx) -> pyfuse3.EntryAttributes:
        """A new entry made by this request: looked up once more by the kernel."""
        st = self._stat(ws, path)
        node = self._node(ws, path)
        node.lookups += 1
        return self._attrs(ws, node, st)

    # ---- lookups and attributes ----------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx):
        if parent_inode == ROOT:
            ws = self.workspaces.get(os.fsdecode(name))
            if ws is None or not ws.admits(ctx.uid):
                raise FUSEError(errno.ENOENT)
            node = self.nodes[ws.top]
            node.lookups += 1
            return self._attrs(ws, node, self._stat(ws, "/"))
        parent = self._get(parent_inode, ctx)
        ws = parent.ws
        path = _child(parent.path, name)
        st = self._stat(ws, path)
        self._need(ws, path, P.VIEW, "lookup", ctx, st)
        node = self._node(ws, path)
        node.lookups += 1
        return self._attrs(ws, node, st)

    async def getattr(self, inode, ctx):
        if inode == ROOT:
            return self._top_attrs()
        node = self._get(inode, ctx)
        st = self._stat(node.ws, node.path)
        if not self.opened.get(inode):  # fstat of a file opened before the rules changed still works
            self._need(node.ws, node.path, P.VIEW, "stat", ctx, st)
        return self._attrs(node.ws, node, st)

    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self._get(inode, ctx)
        ws, path = node.ws, node.path
        st = self._stat(ws, path)
        if fields.update_uid and attr.st_uid != ws.owner[0] or fields.update_gid and attr.st_gid != ws.owner[1]:
            raise FUSEError(errno.EPERM)  # every file belongs to the sandbox's user
        changes = fields.update_mode or fields.update_size or fields.update_atime or fields.update_mtime
        if changes:
            self._need(ws, path, P.WRITE, "setattr", ctx, st)
        try:
            if fields.update_size:
                if fh is not None:
                    os.ftruncate(self.files[fh], attr.st_size)
                else:
                    fd = ws.open(path, os.O_WRONLY)
                    try:
                        os.ftruncate(fd, attr.st_size)
                    finally:
                        os.close(fd)
            if fields.update_mode or fields.update_atime or fields.update_mtime:
                pfd, name, close = ws.parent_fd(path) if path != "/" else (ws.root_fd, b".", False)
                try:
                    if fields.update_mode and not S.S_ISLNK(st.st_mode):
                        os.chmod(name, attr.st_mode & _MODE_BITS, dir_fd=pfd)
                    if fields.update_atime or fields.update_mtime:
                        ns = (attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                              attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns)
                        os.utime(name, ns=ns, dir_fd=pfd, follow_symlinks=False)
                finally:
                    if close:
                        os.close(pfd)
        except OSError as e:
            raise _oserror(e) from None
        return self._attrs(ws, node, self._stat(ws, path))

    async def readlink(self, inode, ctx):
        node = self._get(inode, ctx)
        self._need(node.ws, node.path, P.VIEW, "readlink", ctx)
        pfd, name, close = node.ws.parent_fd(node.path)
        try:
            return os.readlink(name, dir_fd=pfd)
        except OSError as e:
            raise _oserror(e) from None
        finally:
            if close:
                os.close(pfd)

    async def access(self, inode, mode, ctx):
        if inode == ROOT:
            return True
        node = self._get(inode, ctx)
        st = self._stat(node.ws, node.path)
        level = self._level(node.ws, node.path, st)
        if level == P.NONE:
            raise FUSEError(errno.ENOENT)
        if mode & os.W_OK and level < P.WRITE:
            return False
        if S.S_ISDIR(st.st_mode):
            return True  # listing and passing through need view only
        if mode & (os.R_OK | os.X_OK) and level < P.READ:
            return False
        return not (mode & os.X_OK and not st.st_mode & 0o111)

    async def statfs(self, ctx):
        # the caller's own workspace (its disk): any other's would show another sandbox's usage
        ws = next((w for w in self.workspaces.values() if w.admits(ctx.uid)), None)
        out = pyfuse3.StatvfsData()
        if ws is not None:
            fd = ws.open("/", os.O_RDONLY | os.O_DIRECTORY)
            try:
                st = os.statvfs(fd)
            finally:
                os.close(fd)
            for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                         "f_favail", "f_namemax"):
                setattr(out, name, getattr(st, name))
        return out

    # ---- directories ---------------------------------------------------------------------------

    async def opendir(self, inode, ctx):
        names: list[str] = []
        ws = None
        if inode != ROOT:
            node = self._get(inode, ctx)
            ws = node.ws
            self._need(ws, node.path, P.VIEW, "list", ctx, self._stat(ws, node.path))
            try:
                fd = ws.open(node.path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    names = sorted(os.listdir(fd))
                finally:
                    os.close(fd)
            except OSError as e:
                raise _oserror(e) from None
            if ws.listed + len(names) > MAX_LISTED:
                raise FUSEError(errno.EMFILE)
            ws.listed += len(names)
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self.dirs[fh] = (ws, inode, names)
        return fh

    async def readdir(self, fh, start_id, token):
        ws, inode, names = self.dirs.get(fh, (None, ROOT, []))
        node = self.nodes.get(inode)
        if not names or node is None or node.path is None:
            return
        # names only are held while the directory is open; what each is, and whether it may be seen,
        # is looked at as the listing is read
        try:
            fd = ws.open(node.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise _oserror(e) from None
        try:
            for i in range(start_id, len(names)):
                path = _child(node.path, os.fsencode(names[i]))
                try:
                    st = os.stat(names[i], dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if self._level(ws, path, st) < P.VIEW:
                    continue
                child = self._node(ws, path)
                if not pyfuse3.readdir_reply(token, os.fsencode(names[i]), self._attrs(ws, child, st), i + 1):
                    return
                child.lookups += 1
        finally:
            os.close(fd)

    async def releasedir(self, fh):
        ws, _, names = self.dirs.pop(fh, (None, ROOT, []))
        if ws is not None:
            ws.listed -= len(names)

    async def mkdir(self, parent_inode, name, mode, ctx):
        parent = self._get(parent_inode, ctx)
        ws, path = parent.ws, _child(parent.path, name)
        self._need(ws, path, P.WRITE, "mkdir", ctx, exists=False)
        self._at(ws, path, lambda d, n: os.mkdir(n, mode & _MODE_BITS, dir_fd=d))
        return self._entry(ws, path, ctx)

    async def rmdir(self, parent_inode, name, ctx):
        parent = self._get(parent_inode, ctx)
        ws, path = parent.ws, _child(parent.path, name)
        self._need(ws, path, P.WRITE, "rmdir", ctx, self._stat(ws, path))
        self._at(ws, path, lambda d, n: os.rmdir(n, dir_fd=d))
        self._gone(ws, path)

    # ---- files ---------------------------------------------------------------------------------

    async def open(self, inode, flags, ctx):
        node = self._get(inode, ctx)
        ws = node.ws
        writing = bool(flags & _WRITE_FLAGS)
        self._need(ws, node.path, P.WRITE if writing else P.READ, "open for writing" if writing else "open",
                   ctx, self._stat(ws, node.path))
        try:
            fd = ws.open(node.path, flags & ~_OPEN_DROP)
        except OSError as e:
            raise _oserror(e) from None
        return self._file(fd, inode)

    def _file(self, fd: int, inode: int) -> pyfuse3.FileInfo:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self.files[fh] = fd
        self.file_inodes[fh] = inode
        self.opened[inode] = self.opened.get(inode, 0) + 1
        info = pyfuse3.FileInfo(fh=fh)
        info.keep_cache = True  # everything reaches these files through this mount: the page cache stays right
        return info

    async def create(self, parent_inode, name, mode, flags, ctx):
        parent = self._get(parent_inode, ctx)
        ws, path = parent.ws, _child(parent.path, name)
        self._need(ws, path, P.WRITE, "create", ctx, exists=False)
        try:
            fd = ws.open(path, (flags & ~(os.O_NOCTTY | getattr(os, "O_DIRECT", 0))) | os.O_CREAT, mode & _MODE_BITS)
        except OSError as e:
            raise _oserror(e) from None
        entry = self._entry(ws, path, ctx)
        return self._file(fd, entry.st_ino), entry

    async def read(self, fh, off, size):
        try:
            return os.pread(self.files[fh], size, off)
        except OSError as e:
            raise _oserror(e) from None

    async def write(self, fh, off, buf):
        try:
            return os.pwrite(self.files[fh], buf, off)
        except OSError as e:
            raise _oserror(e) from None

    async def flush(self, fh):
        pass

    async def fsync(self, fh, datasync):
        try:
            (os.fdatasync if datasync else os.fsync)(self.files[fh])
        except OSError as e:
            raise _oserror(e) from None

    async def release(self, fh):
        fd = self.files.pop(fh, None)
        if fd is not None:
            os.close(fd)
        inode = self.file_inodes.pop(fh, None)
        if inode is not None:
            self.opened[inode] -= 1
            if not self.opened[inode]:
                del self.opened[inode]

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        if S.S_IFMT(mode) not in (S.S_IFREG, S.S_IFIFO, S.S_IFSOCK):
            raise FUSEError(errno.EPERM)  # no device files in a workspace
        parent = self._get(parent_inode, ctx)
        ws, path = parent.ws, _child(parent.path, name)
        self._need(ws, path, P.WRITE, "mknod", ctx, exists=False)
        self._at(ws, path, lambda d, n: os.mknod(n, S.S_IFMT(mode) | mode & _MODE_BITS, 0, dir_fd=d))
        return self._entry(ws, path, ctx)

    async def symlink(self, parent_inode, name, target, ctx):
        parent = self._get(parent_inode, ctx)
        ws, path = parent.ws, _child(parent.path, name)
        self._need(ws, path, P.WRITE, "symlink", ctx, exists=False)
        self._at(ws, path, lambda d, n: os.symlink(target, n, dir_fd=d))
        return self._entry(ws, path, ctx)

    async def unlink(self, parent_inode, name, ctx):
        parent = self._get(parent_inode, ctx)
        ws, path = parent.ws, _child(parent.path, name)
        self._need(ws, path, P.WRITE, "unlink", ctx, self._stat(ws, path))
        self._at(ws, path, lambda d, n: os.unlink(n, dir_fd=d))
        self._gone(ws, path)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        node = self._get(inode, ctx)
        parent = self._get(new_parent_inode, ctx)
        ws, new = node.ws, _child(parent.path, new_name)
        if parent.ws is not ws:
            raise FUSEError(errno.EXDEV)
        # both names write: a link must not make a file changeable, or readable, somewhere it is not
        self._need(ws, node.path, P.WRITE, "link", ctx, self._stat(ws, node.path))
        self._need(ws, new, P.WRITE, "link", ctx, exists=False)
        src_fd, src_name, close_src = ws.parent_fd(node.path)
        try:
            self._at(ws, new, lambda d, n: os.link(src_name, n, src_dir_fd=src_fd, dst_dir_fd=d,
                                                   follow_symlinks=False))
        finally:
            if close_src:
                os.close(src_fd)
        return self._entry(ws, new, ctx)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        old_parent = self._get(parent_inode_old, ctx)
        new_parent = self._get(parent_inode_new, ctx)
        ws = old_parent.ws
        if new_parent.ws is not ws:
            raise FUSEError(errno.EXDEV)
        old, new = _child(old_parent.path, name_old), _child(new_parent.path, name_new)
        st = self._stat(ws, old)
        self._need(ws, old, P.WRITE, "rename", ctx, st)
        self._need(ws, new, P.WRITE, "rename", ctx, exists=False)
        exchange = flags & pyfuse3.RENAME_EXCHANGE
        if S.S_ISDIR(st.st_mode):
            self._check_subtree(ws, old, new, ctx)
        if exchange:
            other = self._stat(ws, new)
            if S.S_ISDIR(other.st_mode):
                self._check_subtree(ws, new, old, ctx)
        old_fd, old_name, close_old = ws.parent_fd(old)
        try:
            self._at(ws, new, lambda d, n: renameat2(old_fd, old_name, d, n, flags))
        finally:
            if close_old:
                os.close(old_fd)
        if exchange:
            self._moved(ws, new, "\0swap")
            self._moved(ws, old, new)
            self._moved(ws, "\0swap", old)
        else:
            self._moved(ws, old, new)

    def _check_subtree(self, ws: Workspace, old: str, new: str, ctx) -> None:
        """A directory moves with everything in it: each path inside must be writable where it is
        and where it goes."""
        try:
            fd = ws.open(old, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise _oserror(e) from None
        seen = 0
        try:
            for top, dirs, files, _ in os.fwalk(".", dir_fd=fd):
                for name in dirs + files:
                    seen += 1
                    if seen > MAX_RENAMED:
                        raise FUSEError(errno.EXDEV)
                    rel = top[1:] + "/" + name  # top is "." or "./a/b"
                    for path in (old + rel, new + rel):
                        if ws.permissions.level(path) < P.WRITE:
                            ws.deny("rename (inside %s)" % old, old + rel, ctx.pid)
                            raise FUSEError(errno.EACCES)
        finally:
            os.close(fd)

    def _at(self, ws: Workspace, path: str, call) -> None:
        """``call(dir_fd, name)`` on the directory holding ``path``."""
        try:
            fd, name, close = ws.parent_fd(path)
        except OSError as e:
            raise _oserror(e) from None
        try:
            call(fd, name)
        except OSError as e:
            raise _oserror(e) from None
        finally:
            if close:
                os.close(fd)

    def _gone(self, ws: Workspace, path: str) -> None:
        ino = self.paths.pop((ws.id, path), None)
        if ino is not None:
            self.nodes[ino].path = None

    # ---- extended attributes (user.* only: what E2B's upload metadata uses) ---------------------

    def _xattr_path(self, node: Node) -> tuple[str, int, bool]:
        fd, name, close = node.ws.parent_fd(node.path) if node.path != "/" else (node.ws.root_fd, b".", False)
        return "/proc/self/fd/%d/%s" % (fd, os.fsdecode(name)), fd, close

    def _xattr(self, inode, ctx, level: int, op: str, call):
        node = self._get(inode, ctx)
        st = self._stat(node.ws, node.path)
        self._need(node.ws, node.path, level, op, ctx, st)
        path, fd, close = self._xattr_path(node)
        try:
            return call(path)
        except OSError as e:
            raise _oserror(e) from None
        finally:
            if close:
                os.close(fd)

    async def getxattr(self, inode, name, ctx):
        if not name.startswith(_XATTR_PREFIX):
            raise FUSEError(errno.ENODATA)
        return self._xattr(inode, ctx, P.VIEW, "getxattr", lambda p: os.getxattr(p, name, follow_symlinks=False))

    async def listxattr(self, inode, ctx):
        names = self._xattr(inode, ctx, P.VIEW, "listxattr", lambda p: os.listxattr(p, follow_symlinks=False))
        return [os.fsencode(n) for n in names if os.fsencode(n).startswith(_XATTR_PREFIX)]

    async def setxattr(self, inode, name, value, ctx):
        if not name.startswith(_XATTR_PREFIX):
            raise FUSEError(errno.ENOTSUP)
        self._xattr(inode, ctx, P.WRITE, "setxattr", lambda p: os.setxattr(p, name, value, follow_symlinks=False))

    async def removexattr(self, inode, name, ctx):
        if not name.startswith(_XATTR_PREFIX):
            raise FUSEError(errno.ENODATA)
        self._xattr(inode, ctx, P.WRITE, "removexattr", lambda p: os.removexattr(p, name, follow_symlinks=False))



def _guarded(handler):
    """Any error but a FUSEError would end the daemon's loop (and every workspace with it): it
    answers EIO instead, and is logged."""
    @functools.wraps(handler)
    async def guarded(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except FUSEError:
            raise
        except Exception:
            log.exception("%s failed", handler.__name__)
            raise FUSEError(errno.EIO) from None
    return guarded


for _name, _handler in list(vars(PermFS).items()):
    if _name in vars(pyfuse3.Operations) and callable(_handler) and not _name.startswith("_") and _name != "init":
        setattr(PermFS, _name, _guarded(_handler))
