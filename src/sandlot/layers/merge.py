"""Merging several layers into one (flattening a stack that grew too deep), as overlay reads them.

For each path the top-most layer that has it decides: a whiteout stays a whiteout, a file is
copied from that layer. A directory merges the same directory of the layers below it until one
of them is opaque (it hides everything under it) or holds something else at that path (a
whiteout or a file: what lies below is hidden); in that last case the merged directory becomes
opaque itself, so it still hides the template under the whole stack.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .. import _exceptions as E
from .tree import _DIR_FLAGS, MAX_DEPTH, OPAQUE, CopyResult, _Copier, _sorted_names, enough_fds


def _lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", OPAQUE) == b"y"
    except OSError:
        return False


def _contributors(top_fd: int, below: list[int], name: str) -> tuple[list[int], bool]:
    """Fds of `name` (a directory in the layer of `top_fd`) in that layer and the layers below
    that show through, and whether the merged directory must be opaque."""
    fds = [os.open(name, _DIR_FLAGS, dir_fd=top_fd)]
    if _opaque(fds[0]):
        return fds, True
    for parent in below:
        st = _lstat(parent, name)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):  # a whiteout or a file hides what lies below
            return fds, True
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        fds.append(fd)
        if _opaque(fd):
            return fds, True
    return fds, False


def merge_into(copier: _Copier, layers_top_first: list[Path], dst: Path) -> CopyResult:
    enough_fds(per_level=len(layers_top_first) + 1)
    copier.root = dst
    roots = [os.open(p, _DIR_FLAGS) for p in layers_top_first]
    os.mkdir(dst, 0o700)
    out = os.open(dst, _DIR_FLAGS)
    top_st = os.fstat(roots[0])
    xattrs = [(k, v) for k, v in copier._dir_xattrs(roots[0]) if k != OPAQUE]
    copier._dir_meta(out, top_st, xattrs)
    copier.record(*copier.head(b".", "dir", top_st, xattrs))
    # each level: (fds of the layers that show through, top first; the output's fd; path prefix;
    # names left, popped from the end; the top layer's stat of this directory)
    stack = [(roots, out, b"", _names(roots), top_st)]
    try:
        while stack:
            fds, d_fd, prefix, names, st = stack[-1]
            if not names:
                stack.pop()
                os.utime(d_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                for fd in (*fds, d_fd):
                    os.close(fd)
                continue
            name = names.pop()
            path = prefix + os.fsencode(name)
            for i, fd in enumerate(fds):
                entry = _lstat(fd, name)
                if entry is not None:
                    break
            else:
                continue
            if not stat.S_ISDIR(entry.st_mode) or _is_whiteout(entry):
                copier.copy_entry(fd, d_fd, name, path, entry)
                continue
            if len(stack) >= MAX_DEPTH:
                raise E.InvalidArgument(f"directories nest deeper than {MAX_DEPTH} levels")
            child_fds, opaque = _contributors(fd, fds[i + 1:], name)
            xattrs = [(k, v) for k, v in copier._dir_xattrs(child_fds[0]) if k != OPAQUE]
            if opaque:
                xattrs = sorted([*xattrs, (OPAQUE, b"y")])
            os.mkdir(name, 0o700, dir_fd=d_fd)
            child_out = os.open(name, _DIR_FLAGS, dir_fd=d_fd)
            copier._dir_meta(child_out, entry, xattrs)
            copier.record(*copier.head(path, "dir", entry, xattrs))
            stack.append((child_fds, child_out, path + b"/", _names(child_fds), entry))
    except BaseException:
        for fds, d_fd, *_ in stack:
            for fd in (*fds, d_fd):
                os.close(fd)
        raise
    return CopyResult("sha256:" + copier.hash.hexdigest(), copier.bytes, copier.entries)


def _names(fds: list[int]) -> list[str]:
    """The union of the names in these directories, in reverse byte order (popped from the end)."""
    seen = {os.fsencode(n) for fd in fds for n in _sorted_names(fd)}
    return [os.fsdecode(n) for n in sorted(seen, reverse=True)]


def merge(layers: Sequence[Path], dst: Path) -> CopyResult:
    """One layer equal to `layers` (bottom first) stacked: what the upper ones hide of the lower
    ones is left out, and their whiteouts and opaque directories stay (they hide the template
    below them all). Built as overlay would show it, then hashed like any copy."""
    return merge_into(_Copier(0), list(reversed(layers)), dst)
