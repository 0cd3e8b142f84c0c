"""Paths a sandbox's policy blocks outside its workspace (SecurityPolicy.blocked_paths): they do not
exist for it (ENOENT, root included). Each is an overlay whiteout in the sandbox's own upper layer,
made before its root overlay is mounted, over the template below: what the template holds there
cannot be reached from inside (a file made there later is a new one).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .. import _exceptions as E


def hide(upper: Path, lower: Path, paths: tuple[str, ...], uid_base: int) -> None:
    """Whiteouts in ``upper`` for ``paths`` that exist in ``lower`` (the template's root, as host
    root owns it; the sandbox sees owner u as host uid_base + u)."""
    for path in paths:
        parts = [p for p in path.split("/") if p]
        below = lower
        for i, part in enumerate(parts):
            below = below / part
            if below.is_symlink():
                real = "/" + "/".join(parts[:i]) + "/" + part
                raise E.InvalidArgument(f"blocked path {path}: {real} is a symbolic link in the template; "
                                        "block the path it points to")
            if not below.exists():
                break
        else:
            _whiteout(upper, lower, parts, uid_base)


def _whiteout(upper: Path, lower: Path, parts: list[str], uid_base: int) -> None:
    here, there = upper, lower
    for part in parts[:-1]:  # the parents exist in the upper layer as the template has them
        here, there = here / part, there / part
        if not here.exists():
            st = there.stat()
            here.mkdir(mode=stat.S_IMODE(st.st_mode))
            os.chown(here, uid_base + st.st_uid, uid_base + st.st_gid)
            os.chmod(here, stat.S_IMODE(st.st_mode))
    target = here / parts[-1]
    if target.exists() or target.is_symlink():
        return
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs's "deleted" marker
