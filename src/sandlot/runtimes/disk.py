"""A sandbox's own disk: an ext4 filesystem in a sparse image file on a loop device, sized disk_mb.

Everything a sandbox can write to disk lands on it (its overlay's upper layer, hence / and /tmp,
and the host-side log of its agent), so the kernel enforces the total: bytes and inodes are the
filesystem's own, a full disk is ENOSPC inside, and nothing spills onto the host's disk. This
host's kernel has no quota formats (no CONFIG_QFMT_V2, no XFS quota, no tmpfs quota), so project
quotas on a shared filesystem are not an option; a filesystem per sandbox is.

Cost (docs/benchmarks.md): mkfs runs once per size (`blank`, cached in <home>/disks); a sandbox's
image is a sparse copy of that blank (~1 MiB of metadata), attached with one LOOP_CONFIGURE and
mounted with one mount(2). The loop device is autoclear: unmounting the filesystem frees it, so
the mount is the only thing to own. What a sandbox used is statvfs's answer (no tree walk).

A freed loop device is then removed, by threads (LOOP_CTL_REMOVE waits ~45 ms for the kernel):
kept, the host would hold as many as were ever alive at once, and every sysinfo(2) on the host walks
them all (`nr_blockdev_pages`: 23 us with 2000, and `bash` calls it at each start).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .. import _exceptions as E
from .. import syscalls

MiB = 1024 * 1024
BYTES_PER_INODE = 16384  # ext4's default ratio: a 2 GiB disk holds 131,072 files
MOUNT_FLAGS = syscalls.MS_NODEV | syscalls.MS_NOSUID
# noinit_itable: the kernel would otherwise zero the inode tables in the background, writing
# them all into the sparse image (a 2 GiB disk would take 32 MiB of the host's at once)
MOUNT_OPTIONS = "noinit_itable,errors=remount-ro"

_LOOP_CTL_REMOVE = 0x4C81
_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32sQQ")  # struct loop_info64 (232 bytes)
_LOOP_MAJOR = 7

log = logging.getLogger(__name__)


def available() -> str | None:
    """Why sandbox disks cannot be made here, or None when they can."""
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control (loop devices)"
    if not _mkfs():
        return "no mkfs.ext4 (e2fsprogs)"
    return None


def _mkfs() -> str | None:
    for d in ("/usr/sbin", "/sbin", "/usr/bin"):
        if os.access(f"{d}/mkfs.ext4", os.X_OK):
            return f"{d}/mkfs.ext4"
    return None


def blank(cache: Path, size_mb: int) -> Path:
    """The empty filesystem image of `size_mb` MiB that sandbox disks of that size copy; made once."""
    path = cache / f"ext4-{size_mb}.img"
    if path.exists():
        return path
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".ext4-{size_mb}.", suffix=".tmp", dir=cache)  # one per maker
    tmp = Path(name)
    with os.fdopen(fd, "wb") as f:
        f.truncate(size_mb * MiB)
    # No journal: it doubles every metadata write, and a sandbox's disk is scratch space (a host
    # crash can cost a running or frozen sandbox its last writes; a files-only pause has committed
    # them to a layer already). No reserved blocks (no root on the host writes there), no room kept
    # for growing it.
    run = subprocess.run([_mkfs() or "mkfs.ext4", "-q", "-F", "-m", "0", "-i", str(BYTES_PER_INODE),
                          "-O", "^has_journal,^resize_inode", "-E", "lazy_itable_init=1,nodiscard",
                          str(tmp)], capture_output=True, text=True)
    if run.returncode:
        tmp.unlink(missing_ok=True)
        raise E.RuntimeFailure(f"could not make a {size_mb} MiB disk: {run.stderr.strip()[-500:]}")
    os.rename(tmp, path)  # concurrent makers each rename a complete image
    return path


def _sparse_copy(src: Path, dst: Path) -> int:
    """Copy src's data extents (not its holes) into a new file dst; returns dst's open fd."""
    fi = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fo = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        size = os.fstat(fi).st_size
        os.ftruncate(fo, size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fi, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data past offset
                    break
                raise
            end = os.lseek(fi, start, os.SEEK_HOLE)
            while start < end:
                start += os.copy_file_range(fi, fo, end - start, start, start)
            offset = end
        return fo
    finally:
        os.close(fi)


def _attach(image_fd: int) -> tuple[str, int]:
    """A free loop device backed by image_fd and an open fd of it. Autoclear: the kernel frees the
    device once nothing holds it, so the fd must stay open until the filesystem is mounted."""
    info = _LOOP_INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0)
    config = struct.pack("=II", image_fd, 0) + info + bytes(64)
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):  # another process may take the free device first: ask again
            n = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            dev = f"/dev/loop{n}"
            try:
                fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENXIO):  # removed meanwhile (_Removals): ask again
                    continue
                raise
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, config)
                return dev, fd
            except OSError as e:
                os.close(fd)
                if e.errno != errno.EBUSY:
                    raise
    finally:
        os.close(ctl)
    raise E.RuntimeFailure("no free loop device")


def mount(cache: Path, image: Path, target: Path, size_mb: int) -> int:
    """Make the sandbox's disk at `image` (a copy of the blank of its size) and mount it at
    `target`; returns the bytes the empty filesystem already uses (what `used` subtracts)."""
    _mount(_sparse_copy(blank(cache, size_mb), image), target)
    return _fs_used(target)


def remount(image: Path, target: Path) -> None:
    """Mount an existing disk again (after a reboot took its mount, its image stays): what a
    paused sandbox wrote is on it."""
    if not os.path.ismount(target):
        _mount(os.open(image, os.O_RDWR | os.O_CLOEXEC), target)


def _mount(image_fd: int, target: Path) -> None:
    try:
        dev, loop_fd = _attach(image_fd)
    finally:
        os.close(image_fd)
    try:
        target.mkdir(mode=0o700, exist_ok=True)
        syscalls.mount(dev, str(target), "ext4", MOUNT_FLAGS, MOUNT_OPTIONS)
    finally:
        os.close(loop_fd)  # mounted, the filesystem holds the device; not, this frees it


def _fs_used(target: Path) -> int:
    st = os.statvfs(target)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def used(target: Path, empty: int) -> int:
    """Bytes the sandbox has written on its disk (what the filesystem uses beyond when empty)."""
    try:
        return max(0, _fs_used(target) - empty)
    except OSError:
        return 0


def unmount(target: Path) -> None:
    """Unmount a sandbox's disk (detached if still busy: it goes when its last user does; the
    loop device with it), then have its loop device removed."""
    if os.path.ismount(target):
        loop = _loop_number(target)
        syscalls.umount(str(target), lazy=True)
        if loop is not None:
            _removals.add(loop)


def _loop_number(mounted: Path) -> int | None:
    """N of the /dev/loopN a filesystem is mounted from, or None (not a loop device)."""
    try:  # the minor is N only without partitions (max_part): the kernel's name says
        dev = os.stat(mounted).st_dev
        if os.major(dev) != _LOOP_MAJOR:
            return None
        name = os.path.basename(os.readlink(f"/sys/dev/block/{_LOOP_MAJOR}:{os.minor(dev)}"))
    except OSError:  # the unmount goes ahead; the device stays, free for the next attach
        return None
    return int(name[4:]) if name.startswith("loop") and name[4:].isdigit() else None


class _Removals:
    """Loop devices to remove once the kernel has unbound them (after the unmount, in a work queue),
    by a daemon thread: every INTERVAL it removes what is pending, WORKERS at a time (each removal
    waits ~45 ms on RCU grace periods, which concurrent ones share: 200 take ~0.3 s). A device still
    held (a lazy unmount of a busy filesystem) is tried again a few times; one a create took
    meanwhile stays, in use (the kernel answers EBUSY). A device removed between a create's
    LOOP_CTL_GET_FREE and its open is asked for again (_attach). Devices pending when the server
    stops stay on the host, free for the next attach to reuse (runtime.close drains first)."""

    TRIES, INTERVAL, WORKERS = 4, 0.5, 16

    def __init__(self):
        self._pending: dict[int, int] = {}  # loop device number -> removals tried
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, loop: int) -> None:
        with self._changed:
            self._pending.setdefault(loop, 0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="loop-removals", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def drain(self, timeout: float) -> None:
        """Wait until nothing is pending, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)

    def _run(self) -> None:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        while True:
            with self._changed:
                while not self._pending:
                    self._changed.wait()
            time.sleep(self.INTERVAL)
            with self._changed:
                batch = list(self._pending)
            busy = self._remove(ctl, batch)
            with self._changed:
                for loop in batch:
                    tries = self._pending.pop(loop, 0) + 1
                    if loop in busy and tries < self.TRIES:
                        self._pending[loop] = tries
                self._changed.notify_all()

    def _remove(self, ctl: int, batch: list[int]) -> set[int]:
        """Remove the devices of `batch`; those the kernel found busy."""
        busy: set[int] = set()

        def remove(part: list[int]) -> None:
            for loop in part:
                try:
                    fcntl.ioctl(ctl, _LOOP_CTL_REMOVE, loop)
                except OSError as e:
                    if e.errno == errno.EBUSY:
                        busy.add(loop)
                    elif e.errno != errno.ENODEV:  # ENODEV: gone already
                        log.warning("could not remove /dev/loop%d: %s", loop, e)

        workers = [threading.Thread(target=remove, args=(batch[i::self.WORKERS],), daemon=True)
                   for i in range(min(self.WORKERS, len(batch)))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return busy


_removals = _Removals()


def drain_removals(timeout: float = 15) -> None:
    """At a runtime's close: let the loop devices of killed sandboxes go before the process does."""
    _removals.drain(timeout)
