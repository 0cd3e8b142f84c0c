"""`sandlot run-code`: run code in a sandbox's code interpreter, thin over the blocking SDK.

Only sandboxes of the `code-interpreter` template have one (`sandlot create -t code-interpreter`).
State persists between invocations: each run uses the sandbox's default context of its language,
or the context given with --context.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import typer

from ._common import EXIT_INTERRUPTED, EXIT_TIMEOUT, ApiKey, ApiUrl, connect, friendly, note
from ._terminal import sanitize

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str, stream) -> str:
    """IPython colours its tracebacks; keep the colours for a terminal only."""
    return text if stream.isatty() else _ANSI.sub("", text)


@friendly
def run_code(sandbox_id: str = typer.Argument(..., help="Sandbox id."),
             code: str = typer.Argument(None, help="Code to run; '-' or nothing reads it from stdin."),
             language: str = typer.Option(None, "--language", "-l", help="Language of the default context to use "
                                                                             "(python, bash, javascript, typescript)."),
             context: str = typer.Option(None, "--context", "-c", help="Id of a context to run in."),
             timeout: float = typer.Option(300, help="Seconds before the run is interrupted (0 = never); "
                                                     f"exit code {EXIT_TIMEOUT} then."),
             as_json: bool = typer.Option(False, "--json", help="Print the whole execution as one JSON object "
                                                                "when it ends, instead of streaming."),
             api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Run code in a sandbox's code interpreter (template code-interpreter), streaming its output.

    Prints the output as it comes, then the value of the last expression; an error in the code
    prints its traceback and exits with status 1.

    Example: sandlot run-code ID 'import sys; sys.version'
    """
    if language and context:
        raise typer.BadParameter("give --language or --context, not both")
    if code is None or code == "-":
        code = sys.stdin.read()
    out, err = sys.stdout, sys.stderr  # callbacks run on the SDK's thread: bind the streams now

    def write(stream, text: str) -> None:  # a terminal gets no escape sequences but colours (_terminal.py)
        stream.write(sanitize(text) if stream.isatty() else text)
        stream.flush()

    def show(result) -> None:
        if result.text is not None:
            write(out, result.text if result.text.endswith("\n") else result.text + "\n")
        else:
            note(f"[result: {', '.join(result.formats()) or 'empty'}]")

    streaming = {} if as_json else {"on_stdout": lambda m: write(out, m.line),
                                    "on_stderr": lambda m: write(err, m.line), "on_result": show}
    sandbox = connect(sandbox_id, api_url, api_key)
    try:
        execution = sandbox.run_code(code, language=language, context=context, timeout=timeout, **streaming)
    except KeyboardInterrupt:  # the run is interrupted in the sandbox as the request goes away
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        sandbox.close()
    if as_json:
        print(json.dumps({**dataclasses.asdict(execution), "text": execution.text}))
    elif execution.error is not None:
        e = execution.error
        write(err, _plain(e.traceback, err).rstrip("\n") + "\n" if e.traceback else f"{e.name}: {e.value}\n")
    raise typer.Exit(1 if execution.error is not None else 0)


def register(app: typer.Typer) -> None:
    app.command("run-code")(run_code)
