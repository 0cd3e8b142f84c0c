"""`sandlot exec ID [OPTIONS] [--] COMMAND...`: run a command in a sandbox, streaming its output."""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading

import typer
from typer.core import TyperCommand

from ._common import EXIT_INTERRUPTED, EXIT_TIMEOUT, ApiKey, ApiUrl, EnvOpt, connect, error, friendly, pairs


class ExecCommand(TyperCommand):
    """Options may come before or after the sandbox id; the command starts at the next word that is
    no option (or after `--`), so `sandlot exec ID ls -la` passes -la to ls and
    `sandlot exec ID --timeout 1 -- sleep 3` sets exec's timeout."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        takes_value = {name: not (p.is_flag or p.count) for p in self.get_params(ctx)
                       if p.param_type_name == "option" for name in (*p.opts, *p.secondary_opts)}
        seen_id = False
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                break
            if arg.startswith("-") and arg != "-":
                i += 2 if takes_value.get(arg) else 1  # --opt=value and unknown options: one word
                continue
            if seen_id:  # the command: everything from here is its own
                args = [*args[:i], "--", *args[i:]]
                break
            seen_id = True
            i += 1
        return super().parse_args(ctx, args)


def _writer(stream, raw: bool):
    """Writes a command's output bytes to `stream`; through the terminal filter if it is a terminal."""
    out = stream.buffer
    if raw or not stream.isatty():
        return lambda data: (out.write(data), out.flush()), lambda: None
    from ._terminal import TerminalFilter

    screen = TerminalFilter()
    return (lambda data: (out.write(screen.feed(data)), out.flush()),
            lambda: (out.write(screen.feed(b"", final=True)), out.flush()))


def _pump_stdin(handle) -> None:
    from .._exceptions import NotFound

    with contextlib.suppress(NotFound):  # the command may end before its input does
        while chunk := sys.stdin.buffer.read1(65536):
            handle.send_stdin(chunk)
        handle.close_stdin()


@friendly
def exec_(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
          command: list[str] = typer.Argument(..., help="Command; one argument is run by the shell as "
                                                        "is, several are quoted (argv)."),
          cwd: str = typer.Option(None, help="Working directory."),
          user: str = typer.Option(None, help="User to run as (default: the sandbox's `user`)."),
          env: list[str] = EnvOpt,
          interactive: bool = typer.Option(False, "--interactive", "-i", help="Forward local stdin."),
          timeout: float = typer.Option(0, help="Seconds before the command is killed (0 = never); "
                                                f"exit code {EXIT_TIMEOUT} then."),
          raw: bool = typer.Option(False, "--raw", help="Pass the output to a terminal as it is (by default "
                                                        "escape sequences other than colours are dropped)."),
          api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Run a command in a sandbox, streaming its output; exit with its exit code.

    Example: sandlot exec ID --cwd /tmp -- ls -la
    """
    if not command:
        raise typer.BadParameter("no command given", param_hint="COMMAND")
    line = command[0] if len(command) == 1 else shlex.join(command)
    (write_out, end_out), (write_err, end_err) = _writer(sys.stdout, raw), _writer(sys.stderr, raw)
    sandbox = connect(sandbox_id, api_url, api_key)
    handle = sandbox.commands.run(line, background=True, cwd=cwd, user=user, envs=pairs(env, "--env"),
                                  timeout=timeout or None, stdin=interactive, check=False, raw=True,
                                  on_stdout=write_out, on_stderr=write_err)
    if interactive:
        threading.Thread(target=_pump_stdin, args=(handle,), daemon=True).start()
    from .._exceptions import TimeoutError

    try:
        result = handle.wait()
    except KeyboardInterrupt:
        handle.kill()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except TimeoutError:
        error(f"the command did not finish within {timeout:g}s (it was killed)")
        raise typer.Exit(EXIT_TIMEOUT) from None
    finally:
        end_out()
        end_err()
        sandbox.close()
    raise typer.Exit(result.exit_code if 0 <= result.exit_code < 256 else 1)


def register(app: typer.Typer) -> None:
    app.command("exec", cls=ExecCommand)(exec_)
