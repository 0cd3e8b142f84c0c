"""Host filesystem helpers the runtimes and the template store share: which mounts exist, removing a
tree that a sandbox or a build wrote into, measuring one.

Every reader of /proc/self/mountinfo goes through `mounts()`: the kernel writes space, tab, newline
and backslash in its paths as octal escapes (`\\040`), so a raw field never equals a path that holds
one (a state dir named "my sandboxes" would look unmounted, and a removal could go through a mount).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import NamedTuple

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


class Mount(NamedTuple):
    root: str  # the mounted directory, relative to the root of its own filesystem
    point: str  # where it is mounted


def unescape(field: str) -> str:
    """A mountinfo path field as the path itself."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    # fields: id, parent id, major:minor, root, mount point, options, ... (proc(5))
    return [Mount(unescape(f[3]), unescape(f[4])) for f in (line.split() for line in text.splitlines())
            if len(f) > 4]


def mounts() -> list[Mount]:
    """Every mount in this process's mount namespace."""
    with open(MOUNTINFO) as f:
        return parse_mountinfo(f.read())


def mounted_under(path: Path) -> list[str]:
    """Mount points at or inside `path` (symlinks on the way resolved), deepest first."""
    prefix = str(Path(path).resolve()) + "/"
    return sorted((m.point for m in mounts() if (m.point + "/").startswith(prefix)), key=len, reverse=True)


# Where a runtime keeps a bind of each template and layer to clone sandboxes' lowers from
# (runtimes/sources.py): a cache, not a use; the runtime drops a bind whose source is removed.
SOURCE_CACHE = ".sources"


def _cached(point: str) -> bool:
    return f"/{SOURCE_CACHE}/" in point


def source_in_use(path: Path) -> bool:
    """Is `path`, or something in it, the source of a mount (e.g. a template a sandbox's lower layer
    binds)? mountinfo shows a source only relative to its filesystem's root, so this matches on the
    directory's name, which callers make unique."""
    marker = f"/{Path(path).name}/"
    return any(marker in m.root + "/" for m in mounts() if not _cached(m.point))


def source_mounted(path: Path) -> bool:
    """Is the directory `path`, or something in it, the source of a mount? Exact, unlike
    source_in_use: mountinfo's source is relative to its file system's root, so `path` is put in
    the same terms (through the deepest mount of its device that contains it) before comparing.
    Needed where names repeat across servers (content-addressed layers)."""
    real = str(Path(path).resolve())
    dev = os.stat(real).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    with open(MOUNTINFO) as f:
        fields = [line.split() for line in f.read().splitlines()]
    entries = [(f[2], unescape(f[3]), unescape(f[4])) for f in fields if len(f) > 4 and not _cached(unescape(f[4]))]
    holders = [(point, root) for devno, root, point in entries if devno == want
               and (real + "/").startswith(point.rstrip("/") + "/")]
    if not holders:
        return False
    point, root = max(holders, key=lambda h: len(h[0]))
    inside = (root.rstrip("/") + "/" + real[len(point.rstrip("/")):].lstrip("/")).rstrip("/") + "/"
    return any(devno == want and (r.rstrip("/") + "/").startswith(inside) for devno, r, _ in entries)


def unmount_inside(path: Path) -> None:
    """Detach whatever is mounted at or inside `path` (an interrupted debootstrap leaves its /proc
    and /sys mounted in the target); OSError if something stays mounted."""
    for point in mounted_under(path):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    if left := mounted_under(path):
        raise OSError(f"{left[0]} is still mounted")


def remove_tree(path: Path, *, detach_mounts: bool = False) -> None:
    """rm -rf of a directory a sandbox or a build wrote into, never through a mount.

    Mounts inside `path` are detached first if `detach_mounts` (an interrupted debootstrap leaves its
    /proc and /sys mounted in the target); otherwise, or if one cannot be detached, nothing is removed.
    Sandboxes make trees of any depth (a recursive walk such as shutil.rmtree's fails past Python's
    recursion limit) and plant symlinks: GNU rm walks iteratively, never follows a link and, with
    --one-file-system, never enters another filesystem. Raises OSError if anything remains.
    """
    if not os.path.lexists(path):
        return
    if detach_mounts:
        try:
            unmount_inside(path)
        except OSError as e:
            raise OSError(f"{e}: not removing {path}") from None
    elif inside := mounted_under(path):
        raise OSError(f"{inside[0]} is still mounted: not removing {path}")
    rm_rf(path)


def rm_rf(path: Path) -> None:
    """rm -rf of `path`, checking for no mount: only where none can be below it (remove_tree
    checks, runtimes/mount_ns.py runs it where the runtime's directories have none)."""
    done = subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if os.path.lexists(path):
        raise OSError(f"could not remove {path}: {done.stderr.strip()[-500:] or 'rm failed'}")


def allocated(path: Path) -> int:
    """Bytes a (sparse) file takes on the host's disk; 0 if it is not there."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


# Work per reading of a sandbox's disk use: a layer with millions of files must not keep a server
# thread (and the GIL) busy for long. Past it the reading is a lower bound.
TREE_USAGE_MAX_ENTRIES = 200_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def tree_usage(path: Path, max_entries: int = TREE_USAGE_MAX_ENTRIES) -> int:
    """Bytes of disk the files and directories under ``path`` occupy (a sandbox's writable layer).

    The sandbox writes there while we read, so: no recursion (any depth), no symlink followed
    (O_NOFOLLOW), no other filesystem entered, hard links counted once. Directories are opened
    relative to their parent's fd and only one is held at a time (paths of deep trees exceed
    PATH_MAX; an fd per level could exhaust fds); the way back up goes through ".." and stops if it
    does not lead to the directory we came from (moved meanwhile).
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return 0
    total, budget = 0, max_entries
    seen: set[int] = set()  # inodes with more than one link

    def scan(dir_fd: int, dev: int) -> list[str]:
        nonlocal total, budget
        subdirs = []
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                budget -= 1
                if budget < 0:
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile
                    continue
                if st.st_dev != dev:  # a mount point: not the layer's
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    if st.st_ino in seen:
                        continue
                    seen.add(st.st_ino)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
        return subdirs

    try:
        top = os.fstat(fd)
        dev = top.st_dev
        # from the top down to the directory fd is open on: its (device, inode) and the
        # subdirectories still to visit
        stack = [((top.st_dev, top.st_ino), scan(fd, dev))]
        while stack and budget > 0:
            todo = stack[-1][1]
            if todo:
                try:
                    child = os.open(todo.pop(), _DIR_FLAGS, dir_fd=fd)
                except OSError:  # gone, replaced by a symlink, or unreadable
                    continue
                st = os.fstat(child)
                if st.st_dev != dev:
                    os.close(child)
                    continue
                os.close(fd)
                fd = child
                stack.append(((st.st_dev, st.st_ino), scan(fd, dev)))
                continue
            stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != stack[-1][0]:
                break
    except OSError:
        pass
    finally:
        os.close(fd)
    return total
