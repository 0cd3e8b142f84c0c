"""`sandlot cp SRC DST`: copy files and directories between this machine and a sandbox.

One side is `ID:/path`, the other a local path or `-` (stdin, or stdout: a file's bytes; a
directory as a tar archive, as `docker cp` does). A file goes through the files API, streamed; a
directory as one tar stream (_tar.py). A download never destroys a local file: it is written
beside its target and renamed over it only once complete, so a failed or killed copy leaves the
old file as it was.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import stat
import sys
import tempfile
from pathlib import Path

import typer

from ._common import ApiKey, ApiUrl, connect, console, friendly, note

_REMOTE = re.compile(r"^([A-Za-z0-9_]+):(.*)$")  # sandbox ids have no '-' or '.'
PROGRESS_MIN_BYTES = 1024 * 1024


@friendly
def cp(source: str = typer.Argument(..., help="Local path, ID:/path, or - (stdin)."),
       destination: str = typer.Argument(..., help="Local path, ID:/path, or - (stdout)."),
       api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Copy files or directories between this machine and a sandbox (one side is ID:/path).

    Examples: sandlot cp ./src ID:/home/user/   sandlot cp ID:/tmp/out.csv .   tar c . | sandlot cp - ID:/tmp/a.tar
    """
    src_id, src_path = _split(source)
    dst_id, dst_path = _split(destination)
    if (src_id is None) == (dst_id is None):
        raise typer.BadParameter("exactly one of SOURCE and DESTINATION must be ID:/path")
    sandbox = connect(src_id or dst_id, api_url, api_key)
    try:
        if dst_id:
            _upload(sandbox, src_path, dst_path)
        else:
            _download(sandbox, src_path, dst_path)
    finally:
        sandbox.close()


def _split(arg: str) -> tuple[str | None, str]:
    """`ID:/path` -> (ID, /path); anything else is a local path (write ./a:b for a local `a:b`)."""
    m = _REMOTE.match(arg)
    return (m.group(1), m.group(2) or ".") if m else (None, arg)


@contextlib.contextmanager
def _progress(total: int | None, label: str):
    """Yields advance(nbytes); draws a transfer bar on stderr for big transfers to a terminal
    (total None: unknown, a directory)."""
    if (total is not None and total < PROGRESS_MIN_BYTES) or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console(stderr=True, markup=False), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


class _CountingReader:
    """A binary file that reports how much was read from it."""

    def __init__(self, f, advance):
        self._f, self._advance = f, advance

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._advance(len(data))
        return data


def _remote_dir(sandbox, path: str) -> bool:
    from .._exceptions import NotFound

    try:
        return sandbox.files.get_info(path).type.value == "dir"
    except NotFound:
        return False


def _upload(sandbox, local: str, remote: str) -> None:
    if local == "-":
        if remote.endswith("/") or _remote_dir(sandbox, remote):
            raise typer.BadParameter("stdin has no name: give the file's path in the sandbox")
        sandbox.files.write(remote, sys.stdin.buffer)
        return
    src = Path(local)
    if not src.exists():
        raise typer.BadParameter(f"{local}: no such file or directory")
    if remote.endswith("/") or _remote_dir(sandbox, remote):
        remote = posixpath.join(remote, src.name)
    if src.is_dir():
        from . import _tar

        with _progress(sum(p.stat().st_size for p in src.rglob("*") if p.is_file()), f"{local} -> {remote}") as advance:
            _tar.upload(sandbox, src, remote, advance)
        return
    with _progress(src.stat().st_size, f"{local} -> {remote}") as advance, open(src, "rb") as f:
        sandbox.files.write(remote, _CountingReader(f, advance))
    if src.stat().st_mode & 0o111:
        sandbox.commands.run(shlex.join(["chmod", "+x", "--", remote]))


def _local_name(name: str) -> str:
    """A sandbox file's name as a local file name: one path component, never `..` or `/` (the
    sandbox may lie)."""
    from .._exceptions import SandlotError

    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise SandlotError(f"refusing to copy an entry named {name!r}")
    return name


def _download(sandbox, remote: str, local: str) -> None:
    from .._exceptions import SandlotError

    info = sandbox.files.get_info(remote)  # the path named is followed, as cp follows its arguments
    is_dir = info.type.value == "dir"
    if local == "-":
        out = sys.stdout.buffer
        if is_dir:
            from . import _tar

            _tar.stream_out(sandbox, info.path, lambda data: (out.write(data), out.flush()))
        else:
            for chunk in sandbox.files.read(info.path, format="stream"):
                out.write(chunk)
            out.flush()
        return
    dst = Path(local)
    if local.endswith("/") or dst.is_dir():
        if info.name in ("", "/"):
            raise SandlotError("name the local directory to copy the sandbox's / into")
        dst = dst / _local_name(info.name)
    if is_dir:
        from . import _tar

        with _progress(None, f"{remote} -> {local}") as advance:
            skipped = _tar.download(sandbox, info.path, dst, advance)
        for name in skipped:
            note(f"left out {name}: not a file, directory or link")
    else:
        with _progress(info.size, f"{remote} -> {local}") as advance:
            _download_file(sandbox, info, dst, advance)


def _download_file(sandbox, info, dst: Path, advance) -> None:
    """Write beside `dst`, then rename over it: the old file stays whole until the new one is."""
    from .._exceptions import SandlotError

    if dst.is_symlink() and dst.exists():  # write through a local link, as cp does
        dst = Path(os.path.realpath(dst))
    if dst.is_dir():
        raise SandlotError(f"{dst}: a directory is in the way of the file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".sandlot-part", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in sandbox.files.read(info.path, format="stream"):
                f.write(chunk)
                advance(len(chunk))
        umask = os.umask(0o022)
        os.umask(umask)
        try:
            mode = stat.S_IMODE(dst.stat().st_mode)  # an overwritten file keeps its mode
        except FileNotFoundError:
            mode = 0o666 & ~umask
        if info.mode & 0o111:  # an executable stays one
            mode |= 0o111 & ~umask
        os.chmod(part, mode)
        os.replace(part, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise


def register(app: typer.Typer) -> None:
    app.command()(cp)
