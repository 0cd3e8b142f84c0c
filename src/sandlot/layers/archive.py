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
the pass that sets modes after extraction would chmod through it. A hard link must name a file
extracted before it (tarfile would otherwise search the archive for it, or fail with a KeyError).

Nor does it let an archive size the server's memory or disk: members are extracted one at a time
and forgotten (tarfile keeps every member read, ~740 bytes each: an archive of 18 bytes a member
would hold 1 GB per 25 MB), only directories wait for the end (their modes and times, which their
children's creation would change); a header tarfile reads into memory whole is bounded (MAX_HEADER),
so are headers chained before one member (each held until the member's); sparse members and global
headers (unbounded maps, a dict every later member copies) are refused, write() makes none; and the
members' sizes, each counted before the member is written, add up to at most the caller's
`max_bytes` (the disk the layer may use): a few MB of gzip cannot become a disk of zeros.
"""

from __future__ import annotations

import base64
import copy
import os
import stat
import tarfile
import zlib
from pathlib import Path

from .. import _exceptions as E

_MTIME = "SANDLOT.mtime_ns"
_XATTR = "SANDLOT.xattr."
# A PAX or long-name header is read into memory whole: write()'s hold a path (4 KiB at most) and a
# file's xattrs (64 KiB each in base64, a few at most)
MAX_HEADER = 1 << 20
MAX_CHAIN = 3  # headers before one member (write() makes one: its PAX header; GNU adds long names)
MAX_DIRS = 1 << 20  # directories waiting for their modes and times (~200 bytes each)
_HEADERS = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_DAMAGED = (tarfile.TarError, OSError, ValueError, EOFError, OverflowError, KeyError, zlib.error)


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


def _refused(what: str) -> E.InvalidArgument:
    return E.InvalidArgument(f"the layer archive has {what}, which sandlot never writes: refused")


class _Bounded(tarfile.TarInfo):
    """tarfile's header parsing, refusing what it would hold in memory without bound. Its hooks are
    private methods (stable since Python 3.2); an exception other than its own passes through."""

    def _proc_member(self, tar):
        if self.type == tarfile.XGLTYPE:
            raise _refused("a global header")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _refused("a sparse file")
        if self.type not in _HEADERS:
            return super()._proc_member(tar)
        if self.size > MAX_HEADER:
            raise _refused(f"a header of {self.size} bytes (more than {MAX_HEADER})")
        chain = getattr(tar, "_sandlot_chain", 0)  # headers read for the coming member, each held
        if chain >= MAX_CHAIN:
            raise _refused(f"more than {MAX_CHAIN} headers before a member")
        tar._sandlot_chain = chain + 1
        try:
            return super()._proc_member(tar)
        finally:
            tar._sandlot_chain = chain

    def _proc_gnusparse_00(self, *args):  # PAX-described sparse files (a 1.0 map has any length)
        raise _refused("a sparse file")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


def _checked(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    if os.path.lexists(os.path.join(dest, member.name)):
        raise E.InvalidArgument(f"the layer archive names {member.name!r} twice")
    if member.isdev():  # character and block devices, fifos
        if not (member.isfifo() or (member.ischr() and member.devmajor == member.devminor == 0)):
            raise E.InvalidArgument(f"archive member {member.name!r} is a device")
        _probe(member, dest)
    elif member.issym():  # its target is data (absolute ones are common), its name must stay inside
        _probe(member, dest)
    else:
        tarfile.data_filter(member, dest)  # raises on absolute or escaping names and hard links
        if member.islnk() and not os.path.isfile(os.path.join(dest, member.linkname)):
            raise E.InvalidArgument(f"archive member {member.name!r} links to {member.linkname!r}, "
                                    "which is not a file before it")
    return member  # as archived: mode bits and owners kept


def _probe(member: tarfile.TarInfo, dest: str) -> None:
    """tarfile's path checks for a member it would refuse by type."""
    probe = copy.copy(member)
    probe.type, probe.linkname = tarfile.REGTYPE, ""
    tarfile.data_filter(probe, dest)


def extract(archive: Path, dest: Path, max_bytes: int) -> None:
    """Unpack into the new directory `dest`, exactly as write() archived it; its files' data may
    add up to `max_bytes` (ResourceExhausted past it)."""
    dest.mkdir(mode=0o700)
    try:
        with tarfile.open(archive, "r:gz", tarinfo=_Bounded) as tar:
            tar.errorlevel = 2  # a failed chown, chmod or utime is an error too
            _extract(tar, dest, max_bytes)
    except _DAMAGED as e:
        raise E.InvalidArgument(f"the layer archive is damaged: {e}") from e


def _extract(tar: tarfile.TarFile, dest: Path, max_bytes: int) -> None:
    dirs, data, seen_root = [], 0, False
    while (member := tar.next()) is not None:
        tar.members.clear()  # tarfile's list of every member read: forgotten (see the top)
        if os.path.normpath(member.name) == ".":
            if seen_root or not member.isdir():
                raise E.InvalidArgument("the layer archive's root is not one directory")
            seen_root, path = True, dest
        else:
            path = dest / member.name
            data += member.size  # files' data (other members declare none; a hostile one only spends it)
            if data > max_bytes:
                raise E.ResourceExhausted(f"the layer holds more than the {max_bytes} bytes this host has "
                                          "for it", retry=False)
            tar.extract(member, dest, set_attrs=not member.isdir(), numeric_owner=True, filter=_checked)
        _xattrs(member, path)
        if member.isdir():  # modes and times once its children are made
            if len(dirs) >= MAX_DIRS:
                raise _refused(f"more than {MAX_DIRS} directories")
            dirs.append((str(path), member.mode, member.uid, member.gid, _mtime(member)))
        else:
            _finish(path, member.mode, _mtime(member))
    for path, mode, uid, gid, ns in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):  # deepest first
        os.chown(path, uid, gid, follow_symlinks=False)
        _finish(Path(path), mode, ns)


def _xattrs(member: tarfile.TarInfo, path: Path) -> None:
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR):
            os.setxattr(path, key[len(_XATTR):], base64.b64decode(value), follow_symlinks=False)


def _mtime(member: tarfile.TarInfo) -> int:
    return int(member.pax_headers.get(_MTIME, int(member.mtime * 1e9)))


def _finish(path: Path, mode: int, ns: int) -> None:
    """Exact mode and time, never through a symlink (chmod follows them)."""
    if not stat.S_ISLNK(os.lstat(path).st_mode):
        os.chmod(path, stat.S_IMODE(mode))  # after chown and xattrs: chown clears setuid bits
    os.utime(path, ns=(ns, ns), follow_symlinks=False)
