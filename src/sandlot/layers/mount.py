"""A stack (the template's rootfs and the layers above it) as the lower of one sandbox's overlay.

Each part is id-mapped through the sandbox's user namespace, as the template alone always was
(syscalls.idmapped_bind: owned by host root on disk, by the sandbox's own root inside):

    <sandbox dir>/lower/        the template's rootfs
    <sandbox dir>/layers/<i>/   layer i (0 = bottom), when the template has layers

and the overlay's lowerdir lists them top first. The overlay is mounted with redirect_dir,
metacopy and index off whatever the host's defaults: its upper layer must be a plain tree of
files, whiteouts and opaque directories that a commit can copy into a layer valid under any
other stack.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import syscalls

OVERLAY_OPTIONS = "redirect_dir=off,metacopy=off,index=off"


def mount_lowers(sandbox_dir: Path, rootfs: Path, layers: tuple[Path, ...], userns_fd: int,
                 source=lambda path: path) -> str:
    """Bind the template and its layers id-mapped under `sandbox_dir`; the overlay's lowerdir.
    `source(rootfs)`: where to clone the template from (runtimes/sources.py: a bind of its own).
    Layers are cloned where they are: a bind would count as a use and keep them from the layer
    store's collection."""
    lower = sandbox_dir / "lower"
    syscalls.idmapped_bind(str(source(rootfs)), str(lower), userns_fd)
    parts = [str(lower)]
    if layers:
        (sandbox_dir / "layers").mkdir(mode=0o700)
    for i, layer in enumerate(layers):
        target = sandbox_dir / "layers" / str(i)
        target.mkdir()
        syscalls.idmapped_bind(str(layer), str(target), userns_fd)
        parts.append(str(target))
    return ":".join(reversed(parts))


def mount_overlay(target: Path, lowerdir: str, upper: Path, work: Path, flags: int) -> None:
    """Mount the overlay at `target`. Its layers are named by fds (/proc/self/fd/N, resolved at
    the mount): the options are what the sandbox's /proc/self/mountinfo shows, and host paths
    there would tell it where the server keeps its state."""
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in [*lowerdir.split(":"), upper, work]]
    try:
        named = [f"/proc/self/fd/{fd}" for fd in fds]
        syscalls.mount("overlay", str(target), "overlay", flags,
                       f"lowerdir={':'.join(named[:-2])},upperdir={named[-2]},workdir={named[-1]},"
                       f"{OVERLAY_OPTIONS}")
    finally:
        for fd in fds:
            os.close(fd)


def lower_mounts(sandbox_dir: Path) -> list[Path]:
    """What mount_lowers may have mounted, top first (for unmounting)."""
    layers = sandbox_dir / "layers"
    found = sorted(layers.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1, reverse=True) \
        if layers.is_dir() else []
    return [*found, sandbox_dir / "lower"]


def unmount_lowers(sandbox_dir: Path) -> None:
    for target in lower_mounts(sandbox_dir):
        for _ in range(3):
            try:
                syscalls.umount(str(target))
            except OSError:
                break
