"""Runs inside a sandbox (python3, stdlib only): tries to reach paths of the workspace by every way
a process can, and prints one JSON object of outcomes ("ok", or the errno name it failed with).

    python3 probe.py ACTION ARGS...

Actions (each tried through libc-level os calls and through raw syscalls via ctypes):

    stat PATH          lstat, and syscall(SYS_newfstatat) and syscall(SYS_statx)
    read PATH          open+read, syscall(SYS_openat), syscall(SYS_openat2) with no resolve flags,
                       open(O_PATH) then reopen /proc/self/fd/N read-only, mmap of the content
    write PATH         open for writing (append), O_TRUNC, syscall(SYS_openat, O_RDWR), reopen of a
                       read-only fd as O_RDWR through /proc/self/fd, mmap(PROT_WRITE, MAP_SHARED)
                       (a shared writable mapping needs an fd opened for writing)
    create PATH        O_CREAT|O_EXCL, mkdir, symlink, mknod(S_IFIFO)
    remove PATH        unlink (or rmdir), syscall(SYS_unlinkat)
    list DIR           os.listdir and syscall(SYS_getdents64): the names each returns
    rename SRC DST     os.rename, syscall(SYS_renameat2, RENAME_NOREPLACE)
    link SRC DST       os.link, syscall(SYS_linkat)
    symlink_read LINK TARGET   make LINK -> TARGET (LINK where writing is allowed), then read LINK
    attrs PATH         chmod, utime, truncate, setxattr(user.x)
    inotify PATH       inotify_add_watch(PATH)
"""

import ctypes
import errno
import json
import mmap
import os
import stat
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS = {"openat": 257, "newfstatat": 262, "statx": 332, "openat2": 437, "getdents64": 217, "unlinkat": 263,
       "renameat2": 316, "linkat": 265}
AT_FDCWD = -100


def _name(e):
    return errno.errorcode.get(e, str(e))


def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return _name(e.errno)


def raw(name, *args):
    """A raw syscall; OSError on failure."""
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else a for a in args]
    result = libc.syscall(SYS[name], *conv)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def closing(fd):
    os.close(fd)


def do_stat(path):
    buf = ctypes.create_string_buffer(256)
    return {"lstat": attempt(lambda: os.lstat(path)),
            "sys_newfstatat": attempt(lambda: raw("newfstatat", AT_FDCWD, path.encode(), buf, 0x100)),
            "sys_statx": attempt(lambda: raw("statx", AT_FDCWD, path.encode(), 0x100, 0x7ff, buf))}


def _openat2(path, flags):
    how = struct.pack("QQQ", flags, 0, 0)
    return raw("openat2", AT_FDCWD, path.encode(), ctypes.create_string_buffer(how, len(how)), len(how))


def _read_via_proc_fd(path):
    fd = os.open(path, os.O_PATH)
    try:
        closing(os.open("/proc/self/fd/%d" % fd, os.O_RDONLY))
    finally:
        os.close(fd)


def _mmap_read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size or 1
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        m.close()
    finally:
        os.close(fd)


def do_read(path):
    return {"open": attempt(lambda: open(path, "rb").read()),
            "sys_openat": attempt(lambda: closing(raw("openat", AT_FDCWD, path.encode(), os.O_RDONLY))),
            "sys_openat2": attempt(lambda: closing(_openat2(path, os.O_RDONLY))),
            "proc_fd_reopen": attempt(lambda: _read_via_proc_fd(path)),
            "mmap": attempt(lambda: _mmap_read(path))}


def _reopen_rw(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        closing(os.open("/proc/self/fd/%d" % fd, os.O_RDWR))
    finally:
        os.close(fd)


def _mmap_write(path):
    """A shared writable mapping needs an fd open for writing: the same open as "rdwr"."""
    fd = os.open(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_size:
            m = mmap.mmap(fd, os.fstat(fd).st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            m.close()
    finally:
        os.close(fd)


def do_write(path):
    return {"append": attempt(lambda: closing(os.open(path, os.O_WRONLY | os.O_APPEND))),
            "truncate_open": attempt(lambda: closing(os.open(path, os.O_RDONLY | os.O_TRUNC))),
            "sys_openat_rdwr": attempt(lambda: closing(raw("openat", AT_FDCWD, path.encode(), os.O_RDWR))),
            "proc_fd_reopen_rw": attempt(lambda: _reopen_rw(path)),
            "mmap_shared_write": attempt(lambda: _mmap_write(path))}


def do_create(path):
    out = {"create": attempt(lambda: closing(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))}
    if out["create"] == "ok":
        os.unlink(path)
    out["mkdir"] = attempt(lambda: os.mkdir(path))
    if out["mkdir"] == "ok":
        os.rmdir(path)
    out["symlink"] = attempt(lambda: os.symlink("/etc/hostname", path))
    if out["symlink"] == "ok":
        os.unlink(path)
    out["mkfifo"] = attempt(lambda: os.mknod(path, stat.S_IFIFO | 0o600))
    if out["mkfifo"] == "ok":
        os.unlink(path)
    return out


def do_remove(path):
    """unlinkat first; if it worked, the path is made again (empty) for os.unlink/rmdir to remove."""
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    out = {"sys_unlinkat": attempt(lambda: raw("unlinkat", AT_FDCWD, path.encode(), 0x200 if is_dir else 0))}
    if out["sys_unlinkat"] == "ok":
        os.mkdir(path) if is_dir else closing(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    out["unlink"] = attempt(lambda: (os.rmdir if is_dir else os.unlink)(path))
    return out


def _getdents(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    names = []
    try:
        buf = ctypes.create_string_buffer(65536)
        while True:
            n = raw("getdents64", fd, buf, len(buf))
            if n == 0:
                break
            pos = 0
            while pos < n:
                reclen = struct.unpack_from("H", buf.raw, pos + 16)[0]
                names.append(buf.raw[pos + 19:pos + reclen].split(b"\0", 1)[0].decode())
                pos += reclen
    finally:
        os.close(fd)
    return sorted(n for n in names if n not in (".", ".."))


def do_list(path):
    out = {}
    try:
        out["listdir"] = sorted(os.listdir(path))
    except OSError as e:
        out["listdir"] = _name(e.errno)
    try:
        out["getdents64"] = _getdents(path)
    except OSError as e:
        out["getdents64"] = _name(e.errno)
    return out


def do_rename(src, dst):
    out = {"rename": attempt(lambda: os.rename(src, dst))}
    if out["rename"] == "ok":
        os.rename(dst, src)
    out["sys_renameat2"] = attempt(lambda: raw("renameat2", AT_FDCWD, src.encode(), AT_FDCWD, dst.encode(), 1))
    if out["sys_renameat2"] == "ok":
        os.rename(dst, src)
    return out


def do_link(src, dst):
    out = {"link": attempt(lambda: os.link(src, dst))}
    if out["link"] == "ok":
        os.unlink(dst)
    out["sys_linkat"] = attempt(lambda: raw("linkat", AT_FDCWD, src.encode(), AT_FDCWD, dst.encode(), 0))
    if out["sys_linkat"] == "ok":
        os.unlink(dst)
    return out


def do_symlink_read(link, target):
    made = attempt(lambda: os.symlink(target, link))
    out = {"symlink": made, "read_through": attempt(lambda: open(link, "rb").read())}
    if made == "ok":
        os.unlink(link)
    return out


def do_attrs(path):
    return {"chmod": attempt(lambda: os.chmod(path, 0o600)),
            "utime": attempt(lambda: os.utime(path, (1, 1))),
            "truncate": attempt(lambda: os.truncate(path, 0)),
            "setxattr": attempt(lambda: os.setxattr(path, "user.x", b"1"))}


def do_inotify(path):
    fd = libc.inotify_init1(os.O_CLOEXEC)
    try:
        wd = libc.inotify_add_watch(fd, path.encode(), 0xFFF)
        return {"inotify_add_watch": "ok" if wd >= 0 else _name(ctypes.get_errno())}
    finally:
        os.close(fd)


def main():
    action, args = sys.argv[1], sys.argv[2:]
    result = globals()["do_" + action](*args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
