"""Linux syscalls the standard library lacks: id-mapped mounts, overlay mounts, user namespaces.

Risky code lives here on purpose: every call checks its result and raises OSError.
"""

from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

# Syscall numbers of the new mount API are the same on every architecture (unified table, >= 5.x).
SYS_open_tree = 428
SYS_move_mount = 429
SYS_mount_setattr = 442
SYS_fsopen = 430
SYS_fsconfig = 431
SYS_fsmount = 432
if platform.machine() not in ("x86_64", "aarch64"):  # pragma: no cover - documented limitation
    raise ImportError(f"sandlot's namespace runtime supports x86_64 and aarch64, not {platform.machine()}")

CLONE_FS = 0x200
CLONE_NEWNS = 0x20000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x80
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_NOEXEC = 0x8
FSOPEN_CLOEXEC = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_PRIVATE = 1 << 18
STATX_ATTR_MOUNT_ROOT = 0x2000
AT_SYMLINK_NOFOLLOW = 0x100
AT_NO_AUTOMOUNT = 0x800
MS_REC = 1 << 14
MS_BIND = 4096
MNT_DETACH = 2


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace of `fd` (os.setns arrives in Python 3.12)."""
    _check(_libc.setns(fd, nstype))


def set_dumpable(dumpable: bool) -> None:
    """prctl(PR_SET_DUMPABLE): a process that changed its uids is not dumpable, and its /proc/self
    files belong to host root, out of its reach."""
    _check(_libc.prctl(4, int(dumpable), 0, 0, 0))


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None))


def umount(target: str, lazy: bool = True) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH if lazy else 0))


def idmapped_bind(source: str, target: str, userns_fd: int, readonly: bool = True) -> None:
    """Bind ``source`` at ``target`` with its owners shifted through the user namespace's map.

    Host uid 0 in the template appears as the sandbox's own root, host 1000 as its `user`, and so on:
    the template stays owned by host root yet each sandbox sees it under its own unique uid range.
    nosuid: the template's setuid files would run as the sandbox's uids for whoever reaches the mount.
    """
    tree = open_tree(source)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                          | (MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, userns_fd)
        _check(_libc.syscall(SYS_mount_setattr, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr),
                             ctypes.sizeof(attr)))
        move_mount(tree, target)
    finally:
        os.close(tree)


def open_tree(path: str, recursive: bool = False) -> int:
    """A detached copy of the mount at `path` (with those below it if `recursive`): an fd that
    move_mount attaches anywhere, in any mount namespace the caller can enter."""
    return _check(_libc.syscall(SYS_open_tree, AT_FDCWD, path.encode(),
                                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)))


def new_mount(fstype: str, attrs: int = 0) -> int:
    """A fresh filesystem of `fstype` (no source, no options) as a detached mount: an fd to open
    paths under (dir_fd), attached nowhere, gone with the last fd on it. `attrs`: MOUNT_ATTR_*."""
    fs = _check(_libc.syscall(SYS_fsopen, fstype.encode(), FSOPEN_CLOEXEC))
    try:
        _check(_libc.syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, None, None, 0))
        return _check(_libc.syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attrs))
    finally:
        os.close(fs)


def move_mount(tree: int, target: str) -> None:
    """Attach the detached mount `tree` (open_tree) at `target`, in the caller's mount namespace."""
    _check(_libc.syscall(SYS_move_mount, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH))


class _Statx(ctypes.Structure):
    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("attributes", ctypes.c_uint64),
                ("rest_before_mask", ctypes.c_uint8 * 40), ("attributes_mask", ctypes.c_uint64),
                ("rest", ctypes.c_uint8 * 192)]


def is_mount_root(path: str) -> bool:
    """Is `path` (not followed if a symlink) the root of a mount? Binds of a directory of the same
    filesystem too, which os.path.ismount misses. False if it does not exist."""
    buf = _Statx()
    if _libc.statx(AT_FDCWD, path.encode(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, ctypes.byref(buf)) < 0:
        err = ctypes.get_errno()
        if err in (2, 20):  # ENOENT, ENOTDIR
            return False
        raise OSError(err, os.strerror(err), path)
    if not buf.attributes_mask & STATX_ATTR_MOUNT_ROOT:  # pragma: no cover - Linux < 5.8
        raise OSError(95, "statx does not report mount roots on this kernel", path)
    return bool(buf.attributes & STATX_ATTR_MOUNT_ROOT)


# ---- openat2: path resolution confined to a directory (the permission filesystem's daemon) ----

SYS_openat2 = 437  # unified table, as above
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
# Nothing but plain directory entries below the directory: no symlink (not even the last
# component), no /proc magic link, no mount crossing, no `..` above it.
RESOLVE_CONFINED = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: bytes | str, flags: int, mode: int = 0, resolve: int = RESOLVE_CONFINED) -> int:
    """open(2) of ``path`` relative to ``dir_fd``, resolved under the ``resolve`` rules."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    while True:
        fd = _libc.syscall(SYS_openat2, dir_fd, raw, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != 4:  # EINTR
            raise OSError(err, os.strerror(err), os.fsdecode(raw))


def renameat2(old_dir_fd: int, old: bytes, new_dir_fd: int, new: bytes, flags: int = 0) -> None:
    """rename(2) between directory fds, with RENAME_NOREPLACE / RENAME_EXCHANGE ``flags``."""
    _check(_libc.renameat2(old_dir_fd, old, new_dir_fd, new, flags))
