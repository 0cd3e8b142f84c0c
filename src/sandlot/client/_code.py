"""The code interpreter: stateful code in Jupyter kernels (`sandbox.run_code()` and code contexts).

Wire (docs/e2b.md §4), on the same origin as envd, routed by `E2b-Sandbox-Id`:

    POST   /execute                 {code, context_id | language, env_vars, timeout} -> NDJSON lines
    POST   /contexts                {language, cwd, variables, envs}                 -> context
    GET    /contexts                                                                 -> [context]
    POST   /contexts/{id}/restart
    DELETE /contexts/{id}

`timeout` and `variables`/`envs` are sandlot extensions. Errors are plain-text bodies (400, 404,
500), which `_http.translate()` turns into sandlot errors like every other answer. Only sandboxes
of the `code-interpreter` template have kernels; others answer 404 saying so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .. import _exceptions as E
from ._commands import call_back
from ._http import Envd
from ._models import CodeContext, Execution, ExecutionError, Logs, OutputMessage, Result

DEFAULT_TIMEOUT = 300.0  # seconds for a whole run_code(), as E2B's SDK; 0 = no limit
# How long one read may wait. Creating or restarting a context starts a kernel, and the first call
# after a sandbox starts may wait for the in-sandbox driver (the server allows it 120 s); once a run
# is under way the server sends a keepalive line every 5 s, so a stream silent this long is dead.
READ_TIMEOUT = 180.0


def _context_id(context: CodeContext | str) -> str:
    if isinstance(context, CodeContext):
        return context.id
    if isinstance(context, str) and context:
        return context
    raise E.InvalidArgument(f"expected a CodeContext or a context id, got {context!r}")


def _json_object(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise E.InvalidArgument(f"{what} must be a dict, got {type(value).__name__}")
    try:
        json.dumps(dict(value))
    except (TypeError, ValueError) as e:
        raise E.InvalidArgument(f"{what} must hold JSON values: {e}") from None
    return dict(value)


class _Run:
    """One /execute stream being turned into an Execution, callbacks fired line by line."""

    def __init__(self, on_stdout: Callable[[OutputMessage], object] | None,
                 on_stderr: Callable[[OutputMessage], object] | None, on_result: Callable[[Result], object] | None,
                 on_error: Callable[[ExecutionError], object] | None):
        self.on_stdout, self.on_stderr, self.on_result, self.on_error = on_stdout, on_stderr, on_result, on_error
        self.results: list[Result] = []
        self.logs = Logs()
        self.error: ExecutionError | None = None
        self.execution_count: int | None = None
        self.ended = False

    def execution(self) -> Execution:
        return Execution(results=list(self.results), logs=Logs(list(self.logs.stdout), list(self.logs.stderr)),
                         error=self.error, execution_count=self.execution_count)

    async def feed(self, raw: str) -> None:
        if not raw.strip():
            return
        try:
            line = json.loads(raw)
        except ValueError:
            raise E.SandlotError(f"the code interpreter sent a line that is not JSON: {raw[:200]!r}") from None
        if not isinstance(line, dict):
            raise E.SandlotError(f"the code interpreter sent a line that is not an object: {raw[:200]!r}")
        kind = line.get("type")
        if kind in ("stdout", "stderr"):
            message = OutputMessage(str(line.get("text", "")), line.get("timestamp"), error=kind == "stderr")
            (self.logs.stdout if kind == "stdout" else self.logs.stderr).append(message.line)
            await call_back(self.on_stdout if kind == "stdout" else self.on_stderr, message)
        elif kind == "result":
            result = Result.from_json(line)
            self.results.append(result)
            await call_back(self.on_result, result)
        elif kind == "error":
            self.error = ExecutionError.from_json(line)
            await call_back(self.on_error, self.error)
        elif kind == "number_of_executions":
            count = line.get("execution_count")
            self.execution_count = count if isinstance(count, int) else None
        elif kind == "end_of_execution":
            self.ended = True
        # keepalive, and types a newer server may add: nothing to do


class AsyncCodeInterpreter:
    """The code interpreter of one sandbox; `AsyncSandbox.run_code()` and the context methods
    delegate here (see their docstrings)."""

    def __init__(self, envd: Envd):
        self._envd = envd

    def _timeout(self, request_timeout: float | None) -> httpx.Timeout:
        """Connecting and sending are bounded by the request timeout, each read by READ_TIMEOUT."""
        return httpx.Timeout(self._envd.transport.config.timeout(request_timeout), read=READ_TIMEOUT)

    async def run_code(self, code: str, language: str | None = None, context: CodeContext | str | None = None,
                       envs: dict[str, str] | None = None, timeout: float | None = None,
                       on_stdout: Callable[[OutputMessage], object] | None = None,
                       on_stderr: Callable[[OutputMessage], object] | None = None,
                       on_result: Callable[[Result], object] | None = None,
                       on_error: Callable[[ExecutionError], object] | None = None,
                       request_timeout: float | None = None) -> Execution:
        if not isinstance(code, str):
            raise E.InvalidArgument(f"code must be a string, got {type(code).__name__}")
        if language and context:
            raise E.InvalidArgument("give a language or a context, not both (a context has its language)")
        try:
            limit = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        except (TypeError, ValueError):
            raise E.InvalidArgument(f"timeout must be a number of seconds, got {timeout!r}") from None
        if not limit >= 0:
            raise E.InvalidArgument(f"timeout must be >= 0 seconds (0 = no limit), got {timeout}")
        body: dict[str, Any] = {"code": code, "context_id": _context_id(context) if context else None,
                      "language": language or None, "env_vars": _json_object(envs, "envs") or None}
        if limit:
            body["timeout"] = limit  # the server interrupts the kernel then, whatever happens to us
        run = _Run(on_stdout, on_stderr, on_result, on_error)
        started = time.monotonic()
        deadline = asyncio.timeout(limit or None)
        try:
            async with deadline:
                await self._stream(body, run, request_timeout)
        except TimeoutError:  # the builtin one, from `deadline`: closing the stream interrupted the run
            if not deadline.expired():
                raise
            raise self._timed_out(limit, run) from None
        if limit and run.error is not None and run.error.name == "KeyboardInterrupt" \
                and time.monotonic() - started >= limit:
            # the server's deadline won the race against ours (our loop was busy): still a timeout
            raise self._timed_out(limit, run)
        return run.execution()

    @staticmethod
    def _timed_out(limit: float, run: _Run) -> E.TimeoutError:
        return E.TimeoutError(f"the code did not finish within {limit:g}s (it was interrupted; the context "
                              "keeps its state)", execution=run.execution())

    async def _stream(self, body: dict[str, Any], run: _Run, request_timeout: float | None) -> None:
        try:
            async with self._envd.open("POST", "/execute", json=body, timeout=self._timeout(request_timeout)) as r:
                async for line in r.aiter_lines():  # to the end of the body: the connection is reused
                    await run.feed(line)
            if run.ended:
                return
            raise E.SandlotError("the code interpreter's answer ended before the end of the execution", lost=True)
        except E.SandlotError as e:
            if not e.details.get("lost"):
                raise
            better = await self._envd.explain(e)
            if better is e:
                raise
            raise better from e

    async def create_code_context(self, language: str = "python", cwd: str | None = None,
                                  variables: dict[str, Any] | None = None, envs: dict[str, str] | None = None,
                                  request_timeout: float | None = None) -> CodeContext:
        body: dict[str, Any] = {"language": language or "python"}
        if cwd:
            body["cwd"] = cwd
        if variables:
            body["variables"] = _json_object(variables, "variables")
        if envs:
            body["envs"] = _json_object(envs, "envs")
        r = await self._envd.http("POST", "/contexts", json=body, timeout=self._timeout(request_timeout))
        return CodeContext.from_json(r.json())

    async def list_code_contexts(self, request_timeout: float | None = None) -> list[CodeContext]:
        r = await self._envd.http("GET", "/contexts", timeout=self._timeout(request_timeout))
        return [CodeContext.from_json(d) for d in r.json()]

    async def restart_code_context(self, context: CodeContext | str, request_timeout: float | None = None) -> None:
        await self._envd.http("POST", f"/contexts/{quote(_context_id(context), safe='')}/restart",
                              timeout=self._timeout(request_timeout))

    async def remove_code_context(self, context: CodeContext | str, request_timeout: float | None = None) -> None:
        await self._envd.http("DELETE", f"/contexts/{quote(_context_id(context), safe='')}",
                              timeout=self._timeout(request_timeout))
