"""A layer as a portable archive (tar, PAX, gzip) and back, for export to storage.

tarfile keeps names, types (whiteouts are character devices 0:0, hard links are links), modes,
numeric owners and symlink targets; what it does not keep rides in PAX records of our own:
`SANDLOT.mtime_ns` (exact times: the digest includes them) and `SANDLOT.xattr.<name>` (base64 of
each xattr, as layers/tree.py keeps them). An imported layer is committed again from the extracted
tree, so its digest is recomputed and must equal the one it was exported under: a damaged or
altered archive is refused.

Extraction trusts no archive: every member passes tarfile's `data` filter's path checks (no
absolute names, nothing resolving outside the destination, links included) while keeping its own
mode and owner; devices other than whiteouts are refused. A path named twice is refused too (write()
never does): a later member would replace an earlier one, a file by a symlink to a host file, and
the pass that sets modes after extraction would chmod through it.
"""

from __future__ import annotations

import base64
import copy
import os
import stat
import tarfile
from pathlib import Path

from .. import _exceptions as E

_MTIME = "SANDLOT.mtime_ns"
_XATTR = "SANDLOT.xattr."


def write(layer_tree: Path, dest: Path) -> None:
    """Archive the layer tree (a LayerStore.path()) into the file `dest`."""
    def annotate(info: tarfile.TarInfo) -> tarfile.TarInfo:
        path = layer_tree / info.name if info.name != "." else layer_tree
        st = os.lstat(path)
        info.pax_headers = {_MTIME: str(st.st_mtime_ns)}
        for key in os.listxattr(path, follow_symlinks=False):
            value = os.getxattr(path, key, follow_symlinks=False)
            info.pax_headers[_XATTR + key] = base64.b64encode(value).decode()
        info.uname = info.gname = ""  # numeric owners only
        return info

    # walked here, not by tar.add's recursion: a layer may be as deep as a copy allows (tree.py
    # MAX_DEPTH), past Python's recursion limit. The same order: each directory, then its sorted names
    stack = [(str(layer_tree), ".")]
    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=1) as tar:
        while stack:
            path, arcname = stack.pop()
            tar.add(path, arcname=arcname, recursive=False, filter=annotate)
            if stat.S_ISDIR(os.lstat(path).st_mode):
                stack.extend((os.path.join(path, name), os.path.join(arcname, name))
                             for name in sorted(os.listdir(path), reverse=True))


def _checked(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    if member.name in (".", "./"):
        return member
    if member.isdev():  # character and block devices, fifos
        if not (member.isfifo() or (member.ischr() and member.devmajor == member.devminor == 0)):
            raise E.InvalidArgument(f"archive member {member.name!r} is a device")
        _probe(member, dest)
    elif member.issym():  # its target is data (absolute ones are common), its name must stay inside
        _probe(member, dest)
    else:
        tarfile.data_filter(member, dest)  # raises on absolute or escaping names and hard links
    return member  # as archived: mode bits and owners kept


def _probe(member: tarfile.TarInfo, dest: str) -> None:
    """tarfile's path checks for a member it would refuse by type."""
    probe = copy.copy(member)
    probe.type, probe.linkname = tarfile.REGTYPE, ""
    tarfile.data_filter(probe, dest)


def extract(archive: Path, dest: Path) -> None:
    """Unpack into the new directory `dest`, exactly as write() archived it."""
    dest.mkdir(mode=0o700)
    with tarfile.open(archive, "r:gz") as tar:
        try:
            members = tar.getmembers()
            _unique(members)
            tar.extractall(dest, members=members, numeric_owner=True, filter=_checked)
            _finish(members, dest)
        except (tarfile.TarError, OSError, ValueError) as e:
            raise E.InvalidArgument(f"the layer archive is damaged: {e}") from e


def _unique(members: list[tarfile.TarInfo]) -> None:
    seen = set()
    for member in members:
        name = os.path.normpath(member.name)
        if name in seen:
            raise E.InvalidArgument(f"the layer archive names {member.name!r} twice")
        seen.add(name)


def _finish(members: list[tarfile.TarInfo], dest: Path) -> None:
    """xattrs and exact times, deepest first (setting them on a directory's children changes it)."""
    for member in sorted(members, key=lambda m: m.name.count("/"), reverse=True):
        path = dest / member.name if member.name not in (".", "./") else dest
        for key, value in member.pax_headers.items():
            if key.startswith(_XATTR):
                os.setxattr(path, key[len(_XATTR):], base64.b64decode(value), follow_symlinks=False)
        if not stat.S_ISLNK(os.lstat(path).st_mode):  # chmod follows symlinks: never through one
            os.chmod(path, stat.S_IMODE(member.mode))  # after chown: it clears setuid bits
        ns = int(member.pax_headers.get(_MTIME, int(member.mtime * 1e9)))
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
