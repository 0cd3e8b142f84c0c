"""Deleting a root filesystem safely: nothing mounted inside it, no sandbox still using it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mountinfo() -> list[tuple[str, str]]:
    """(root within its filesystem, mount point) of every mount in this mount namespace."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [(_unescape(f[3]), _unescape(f[4])) for f in (line.split() for line in lines) if len(f) > 4]


def in_use(path: Path) -> bool:
    """Is `path`, or something in it, the source of a mount (a sandbox's lower layer)?

    mountinfo shows a source only relative to its filesystem's root, so match on the directory's
    name, which callers make unique.
    """
    marker = f"/{path.name}/"
    return any(marker in root + "/" for root, _ in _mountinfo())


def unmount_inside(path: Path) -> None:
    """Detach whatever is mounted inside `path` (an interrupted debootstrap leaves its /proc and
    /sys mounted in the target); OSError if something stays."""
    prefix = str(path.resolve()) + "/"

    def mounted() -> list[str]:
        return sorted((p for _, p in _mountinfo() if (p + "/").startswith(prefix)), key=len, reverse=True)

    for point in mounted():
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    if left := mounted():
        raise OSError(f"cannot unmount {left[0]}")


def remove_tree(path: Path) -> None:
    """rm -rf that first detaches whatever is mounted inside, so it can never delete through into a
    host filesystem."""
    try:
        unmount_inside(path)
    except OSError as e:
        raise OSError(f"{e}; not deleting {path}") from None
    shutil.rmtree(path, ignore_errors=True)
