"""A sandbox's volumes: each host mount (volumes/store.py) id-mapped through the sandbox's user
namespace at <mount dir>/vol<i> (under /run, where the sandbox's bwrap can reach it), then bound by
bwrap at its path inside (runtimes/bwrap.py volume_binds). Files keep their template-space owners on the volume, whichever sandbox
wrote them."""

from __future__ import annotations

from pathlib import Path

from .. import syscalls


def mount_volumes(mount_dir: Path, volumes: tuple[tuple[str, str], ...], userns_fd: int) -> None:
    for i, (host, _) in enumerate(volumes):
        target = mount_dir / f"vol{i}"
        target.mkdir(mode=0o700)
        syscalls.idmapped_bind(host, str(target), userns_fd, readonly=False)


def unmount_volumes(mount_dir: Path) -> None:
    if not mount_dir.is_dir():
        return
    for target in sorted(mount_dir.glob("vol*")):
        for _ in range(3):
            try:
                syscalls.umount(str(target))
            except OSError:
                break
