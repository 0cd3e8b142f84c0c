"""`sandlot create|ls|exec|shell|cp|kill`: sandbox commands, thin over the blocking SDK.

They talk to a running server (`--api-url` / $SANDLOT_API_URL, default http://127.0.0.1:3000, with
`--api-key` / $SANDLOT_API_KEY); unlike the SDK they never start an embedded one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
import re
import select
import shlex
import shutil
import signal
import sys
import termios
import threading
import tty
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Column, Table

from .. import FileType, NotFound, Sandbox, SandlotError

console = Console()
errors = Console(stderr=True)

ApiUrl = typer.Option("http://127.0.0.1:3000", "--api-url", envvar="SANDLOT_API_URL", help="Server URL.")
ApiKey = typer.Option(None, "--api-key", envvar="SANDLOT_API_KEY", help="API key.")
EnvOpt = typer.Option(None, "--env", "-e", help="Environment variable K=V (repeatable).")
MetadataOpt = typer.Option(None, "--metadata", "-m", help="Metadata K=V (repeatable).")


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {item!r}", param_hint=what)
        pairs[key] = value
    return pairs


def _friendly(command):
    """sandlot errors end the command with a one-line message and exit code 1, not a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SandlotError as e:
            errors.print(f"[red]error:[/] {e.message or type(e).__name__}")
            raise typer.Exit(1) from None
    return run


def create(template: str = typer.Option("base", "--template", "-t", help="Template to start from."),
           timeout: int = typer.Option(300, help="Seconds until the sandbox is killed."),
           env: list[str] = EnvOpt, metadata: list[str] = MetadataOpt,
           memory_mb: int = typer.Option(None, "--memory-mb", help="Memory limit in MiB (default 512)."),
           cpu: float = typer.Option(None, "--cpu", help="CPU limit in cores, e.g. 0.5 (default 1)."),
           pids: int = typer.Option(None, "--pids", help="Most processes at once (default 512)."),
           disk_mb: int = typer.Option(None, "--disk-mb", help="Disk size in MiB (default 2048)."),
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Create a sandbox and print its id."""
    given = {"memory_mb": memory_mb, "cpu_count": cpu, "pids": pids, "disk_mb": disk_mb}
    limits = {k: v for k, v in given.items() if v is not None} or None  # the rest keep their defaults
    sandbox = Sandbox.create(template=template, timeout=timeout, envs=_pairs(env, "--env"),
                             metadata=_pairs(metadata, "--metadata"), limits=limits, api_url=api_url,
                             api_key=api_key)
    sandbox.close()
    print(sandbox.sandbox_id)


def _ago_or_in(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = int((when - datetime.now(timezone.utc)).total_seconds())
    m, s = divmod(abs(seconds), 60)
    h, m = divmod(m, 60)
    span = f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def ls(state: str = typer.Option(None, help="running, paused, or both comma-separated."),
       metadata: list[str] = MetadataOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """List sandboxes, newest first."""
    # ids are never cut (they are copied into other commands): long metadata wraps instead
    table = Table(*(Column(name, no_wrap=True) for name in ("id", "template", "state", "started", "ends")),
                  Column("metadata", overflow="fold"), box=None)
    for info in Sandbox.list(metadata=_pairs(metadata, "--metadata"), state=state, api_url=api_url, api_key=api_key):
        table.add_row(info.sandbox_id, info.template_id, info.state, _ago_or_in(info.started_at),
                      _ago_or_in(info.end_at), " ".join(f"{k}={v}" for k, v in info.metadata.items()))
    if table.row_count:
        console.print(table)
    else:
        errors.print("[dim]no sandboxes[/]")


def _pump_stdin(handle) -> None:
    with contextlib.suppress(NotFound):  # the command may end before its input does
        while chunk := sys.stdin.buffer.read1(65536):
            handle.send_stdin(chunk)
        handle.close_stdin()


def exec_(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
          command: list[str] = typer.Argument(..., help="Command; one argument is run by the shell as "
                                                        "is, several are quoted (argv)."),
          cwd: str = typer.Option(None, help="Working directory."),
          user: str = typer.Option(None, help="User to run as (default: the sandbox's `user`)."),
          env: list[str] = EnvOpt,
          interactive: bool = typer.Option(False, "--interactive", "-i", help="Forward local stdin."),
          timeout: float = typer.Option(0, help="Seconds before the command is killed (0 = never)."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Run a command in a sandbox, streaming its output; exit with its exit code.

    Example: sandlot exec ID -- ls -la /tmp
    """
    if command[:1] == ["--"]:  # options stop at the sandbox id, so a `--` separator arrives here
        command = command[1:]
    if not command:
        raise typer.BadParameter("no command given", param_hint="COMMAND")
    line = command[0] if len(command) == 1 else shlex.join(command)
    sandbox = Sandbox.connect(sandbox_id, api_url=api_url, api_key=api_key)
    out, err = sys.stdout, sys.stderr
    handle = sandbox.commands.run(
        line, background=True, cwd=cwd, user=user, envs=_pairs(env, "--env"), timeout=timeout or None,
        stdin=interactive, check=False,
        on_stdout=lambda s: (out.write(s), out.flush()), on_stderr=lambda s: (err.write(s), err.flush()))
    if interactive:
        threading.Thread(target=_pump_stdin, args=(handle,), daemon=True).start()
    try:
        result = handle.wait()
    except KeyboardInterrupt:
        handle.kill()
        raise typer.Exit(130) from None
    raise typer.Exit(result.exit_code if 0 <= result.exit_code < 256 else 1)


def shell(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
          cwd: str = typer.Option(None, help="Start directory."),
          user: str = typer.Option(None, help="User (default: the sandbox's `user`)."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Open an interactive shell in a sandbox (a terminal session; exit or Ctrl-D ends it)."""
    sandbox = Sandbox.connect(sandbox_id, api_url=api_url, api_key=api_key)
    code = _interactive_shell(sandbox, cwd=cwd, user=user)
    raise typer.Exit(code if 0 <= code < 256 else 1)


def cp(source: str = typer.Argument(..., help="Local path or ID:/path."),
       destination: str = typer.Argument(..., help="Local path or ID:/path."),
       api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Copy files or directories between this machine and a sandbox (one side is ID:/path)."""
    src_id, src_path = _split(source)
    dst_id, dst_path = _split(destination)
    if (src_id is None) == (dst_id is None):
        raise typer.BadParameter("exactly one of SOURCE and DESTINATION must be ID:/path")
    sandbox = Sandbox.connect(src_id or dst_id, api_url=api_url, api_key=api_key)
    try:
        if dst_id:
            _upload(sandbox, src_path, dst_path)
        else:
            _download(sandbox, src_path, dst_path)
    finally:
        sandbox.close()


def kill(sandbox_ids: list[str] = typer.Argument(..., help="Sandbox ids."),
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Kill sandboxes."""
    missing = False
    for sandbox_id in sandbox_ids:
        if Sandbox.kill(sandbox_id, api_url=api_url, api_key=api_key):
            print(f"killed {sandbox_id}")
        else:
            errors.print(f"[yellow]no sandbox {sandbox_id}[/]")
            missing = True
    raise typer.Exit(1 if missing else 0)


# --- shell: bridging this terminal to a sandbox PTY ---


def _interactive_shell(sandbox, cwd: str | None, user: str | None) -> int:
    """Bridge this terminal to a sandbox PTY: raw mode, stdin forwarded, SIGWINCH -> resize; the
    terminal is restored however the session ends. Piped (non-tty) stdin works too: EOF sends ^D."""
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    is_tty = os.isatty(stdin_fd)
    cols, rows = shutil.get_terminal_size()
    term = sandbox.pty.create(cols=cols, rows=rows, cwd=cwd, user=user, on_data=lambda b: os.write(stdout_fd, b))
    ended, failure = threading.Event(), []

    def wait() -> None:
        try:
            term.wait()
        except SandlotError as e:  # e.g. the sandbox was killed under us: raised after cleanup
            failure.append(e)
        finally:
            ended.set()

    threading.Thread(target=wait, daemon=True).start()
    resized = threading.Event()
    previous_winch = signal.signal(signal.SIGWINCH, lambda *_: resized.set())
    saved = termios.tcgetattr(stdin_fd) if is_tty else None
    stdin_open = True
    try:
        if is_tty:
            tty.setraw(stdin_fd)
        while not ended.is_set():
            if resized.is_set():
                resized.clear()
                sandbox.pty.resize(term.pid, *shutil.get_terminal_size())
            if not stdin_open:
                ended.wait(0.1)
                continue
            if select.select([stdin_fd], [], [], 0.1)[0]:
                data = os.read(stdin_fd, 65536)
                stdin_open = bool(data)
                with contextlib.suppress(NotFound):  # the shell may have just exited
                    sandbox.pty.send_input(term.pid, data or b"\x04")
    except KeyboardInterrupt:  # only without a tty: in raw mode Ctrl-C is a keystroke for the sandbox
        term.kill()
        return 130
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous_winch)
    if failure:
        raise failure[0]
    return term.exit_code or 0


# --- cp: transfers in either direction ---

_REMOTE = re.compile(r"^([A-Za-z0-9_]+):(.*)$")  # sandbox ids have no '-' or '.'
PROGRESS_MIN_BYTES = 1024 * 1024


def _split(arg: str) -> tuple[str | None, str]:
    """`ID:/path` -> (ID, /path); anything else is a local path (write ./a:b for a local `a:b`)."""
    m = _REMOTE.match(arg)
    return (m.group(1), m.group(2) or ".") if m else (None, arg)


@contextlib.contextmanager
def _progress(total: int, label: str):
    """Yields advance(nbytes); draws a transfer bar on stderr for big transfers to a terminal."""
    if total < PROGRESS_MIN_BYTES or not errors.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True) as bar:
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
    try:
        return sandbox.files.get_info(path).type == FileType.DIR
    except NotFound:
        return False


def _upload(sandbox, local: str, remote: str) -> None:
    src = Path(local)
    if not src.exists():
        raise typer.BadParameter(f"{local}: no such file or directory")
    if remote.endswith("/") or _remote_dir(sandbox, remote):
        remote = posixpath.join(remote, src.name)
    if src.is_dir():
        sandbox.files.make_dir(remote)
        for d in sorted(p for p in src.rglob("*") if p.is_dir()):
            sandbox.files.make_dir(posixpath.join(remote, d.relative_to(src).as_posix()))
        pairs = [(p, posixpath.join(remote, p.relative_to(src).as_posix()))
                 for p in sorted(src.rglob("*")) if p.is_file()]
    else:
        pairs = [(src, remote)]
    with _progress(sum(p.stat().st_size for p, _ in pairs), f"{local} -> {remote}") as advance:
        for path, target in pairs:
            with open(path, "rb") as f:
                sandbox.files.write(target, _CountingReader(f, advance))
    if executable := [t for p, t in pairs if p.stat().st_mode & 0o111]:
        sandbox.commands.run(shlex.join(["chmod", "+x", "--", *executable]))


def _local_name(name: str) -> str:
    """A directory entry's name as a local file name: one path component, never `..` or `/` (the
    names come from the sandbox, which may lie)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise SandlotError(f"refusing to copy an entry named {name!r}")
    return name


# Prints what each symlink given on the command line says (None if it is no symlink any more).
_READLINK = ("import json, os, sys; "
             "print(json.dumps([os.readlink(p) if os.path.islink(p) else None for p in sys.argv[1:]]))")


def _link_texts(sandbox, paths: list[str]) -> list[str | None]:
    texts: list[str | None] = []
    for start in range(0, len(paths), 500):  # well below the kernel's argument size limit
        chunk = paths[start:start + 500]
        texts += json.loads(sandbox.commands.run(shlex.join(["python3", "-c", _READLINK, *chunk])).stdout)
    return texts


def _download(sandbox, remote: str, local: str) -> None:
    info = sandbox.files.get_info(remote)  # the path named is followed, as cp follows its arguments
    dst = Path(local)
    if local.endswith("/") or dst.is_dir():
        if info.name in ("", "/"):
            raise SandlotError("name the local directory to copy the sandbox's / into")
        dst = dst / _local_name(info.name)
    files, links = [], []  # (entry, local path)
    if info.type == FileType.DIR:
        todo = [(info.path, dst)]
        while todo:
            remote_dir, local_dir = todo.pop()
            local_dir.mkdir(parents=True, exist_ok=True)
            for entry in sandbox.files.list(remote_dir):
                target = local_dir / _local_name(entry.name)
                if entry.symlink_target is not None:  # copied as a link, never followed: `up -> ..` loops
                    links.append((entry, target))
                elif entry.type == FileType.DIR:
                    todo.append((entry.path, target))
                else:
                    files.append((entry, target))
    else:
        files.append((info, dst))
    with _progress(sum(e.size for e, _ in files), f"{remote} -> {local}") as advance:
        for entry, target in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                for chunk in sandbox.files.read(entry.path, format="stream"):
                    f.write(chunk)
                    advance(len(chunk))
            if entry.mode & 0o111:
                target.chmod(target.stat().st_mode | 0o111)
    # links last, so no file above is written through a link this copy made
    for (entry, target), text in zip(links, _link_texts(sandbox, [e.path for e, _ in links])):
        if text is None:
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            raise SandlotError(f"{target}: a directory is in the way of the symlink {entry.path}")
        target.symlink_to(text)


def register(app: typer.Typer) -> None:
    """Add the sandbox commands to the top-level app."""
    app.command()(_friendly(create))
    app.command()(_friendly(ls))
    # options stop at the command: `sandlot exec ID ls -la` passes -la to ls
    app.command("exec", context_settings={"allow_interspersed_args": False})(_friendly(exec_))
    app.command()(_friendly(shell))
    app.command()(_friendly(cp))
    app.command()(_friendly(kill))
