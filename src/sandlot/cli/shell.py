"""`sandlot shell ID`: an interactive shell in a sandbox, this terminal bridged to a sandbox PTY."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty

import typer

from ._common import EXIT_INTERRUPTED, ApiKey, ApiUrl, connect, friendly


@friendly
def shell(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
          cwd: str = typer.Option(None, help="Start directory."),
          user: str = typer.Option(None, help="User (default: the sandbox's `user`)."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Open an interactive shell in a sandbox (a terminal session; exit or Ctrl-D ends it)."""
    sandbox = connect(sandbox_id, api_url, api_key)
    try:
        code = _interactive_shell(sandbox, cwd=cwd, user=user)
    finally:
        sandbox.close()
    raise typer.Exit(code if 0 <= code < 256 else 1)


def _interactive_shell(sandbox, cwd: str | None, user: str | None) -> int:
    """Bridge this terminal to a sandbox PTY: raw mode, stdin forwarded, SIGWINCH -> resize; the
    terminal is restored however the session ends. Piped (non-tty) stdin works too: EOF sends ^D."""
    from .._exceptions import NotFound, SandlotError

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
        return EXIT_INTERRUPTED
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous_winch)
    if failure:
        raise failure[0]
    return term.exit_code or 0


def register(app: typer.Typer) -> None:
    app.command()(shell)
