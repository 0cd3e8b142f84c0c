"""Paths a sandbox's policy blocks outside its workspace (SecurityPolicy.blocked_paths): they do not
exist for it (ENOENT, root included). Each is an overlay whiteout in the sandbox's own upper layer,
made before its root overlay is mounted, over the template and a snapshot's layers below: what they
hold there cannot be reached from inside (a file made there later is a new one).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .. import _exceptions as E


def hide(upper: Path, lowers: list[Path], paths: tuple[str, ...], uid_base: int) -> None:
    """Whiteouts in ``upper`` for ``paths`` that exist in any of ``lowers`` (the template's root and
    a snapshot's layers, top first, as host root owns them; the sandbox sees owner u as host
    uid_base + u). A path a layer above deleted may get a whiteout too: it hides nothing more."""
    for path in paths:
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            below = [lower.joinpath(*parts[:i + 1]) for lower in lowers]
            if any(b.is_symlink() for b in below):
                real = "/" + "/".join(parts[:i + 1])
                raise E.InvalidArgument(f"blocked path {path}: {real} is a symbolic link in the template; "
                                        "block the path it points to")
            if not any(b.exists() for b in below):
                break
        else:
            _whiteout(upper, lowers, parts, uid_base)


def _whiteout(upper: Path, lowers: list[Path], parts: list[str], uid_base: int) -> None:
    here = upper
    for i, part in enumerate(parts[:-1]):  # the parents exist in the upper layer as the layers below have them
        here = here / part
        if not here.exists():
            there = next(d for d in (lower.joinpath(*parts[:i + 1]) for lower in lowers) if d.is_dir())
            st = there.stat()
            here.mkdir(mode=stat.S_IMODE(st.st_mode))
            os.chown(here, uid_base + st.st_uid, uid_base + st.st_gid)
            os.chmod(here, stat.S_IMODE(st.st_mode))
    target = here / parts[-1]
    if target.exists() or target.is_symlink():
        return
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs's "deleted" marker
