"""Sessions: named shells in a sandbox that keep their state from one command to the next
(`sandbox.session()`, `create_session`/`get_session`/`list_sessions`/`delete_session`)."""

from __future__ import annotations

import base64
import builtins
import json
import posixpath
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, overload
from urllib.parse import quote

from .. import _exceptions as E
from ._commands import call_back
from ._files import AsyncFiles, Data
from ._http import Transport, error_for_status, sandbox_path
from ._models import CommandResult, EntryInfo, WriteInfo

DEFAULT_TIMEOUT = 60.0
HTTP_MARGIN = 30.0  # the HTTP request outlives the command's own timeout by this much


@dataclass(frozen=True)
class SessionInfo:
    """A session as the sandbox sees it now: `cwd` is its shell's current directory."""

    id: str
    user: str
    pid: int
    cwd: str | None
    envs: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    busy: bool = False  # a command is running

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(id=data["sessionID"], user=data["user"], pid=data["pid"], cwd=data.get("cwd"),
                   envs=data.get("envs") or {}, busy=bool(data.get("busy")),
                   created_at=datetime.fromisoformat(data["createdAt"].replace("Z", "+00:00")))


class AsyncSession:
    """A shell in the sandbox that keeps its state: `cd`, `export`, `source venv/bin/activate`,
    shell functions, aliases and background jobs carry from one `exec` to the next.

        async with await sandbox.session(cwd="/tmp") as session:      # deleted when the block ends
            await session.exec("python3 -m venv venv && source venv/bin/activate")
            result = await session.exec("python -c 'import sys; print(sys.prefix)'")
            await session.files.write("notes.txt", "relative to the shell's cwd")

    Commands of one session run one after another, in the order they were sent. What a command's
    background jobs print after it returned is dropped: it never shows up in a later command's
    output (redirect it to a file to keep it).
    """

    id: str
    """The session's id (`sandbox.get_session(id)` finds it again)."""
    user: str
    """Who its shell runs as."""
    files: AsyncSessionFiles
    """The sandbox's files, relative paths from the shell's current directory."""

    def __init__(self, transport: Transport, sandbox_id: str, info: SessionInfo, files: AsyncFiles):
        """Internal: sessions come from `sandbox.session()` and `sandbox.get_session()`."""
        self.id = info.id
        self.user = info.user
        self._transport = transport
        self._path = sandbox_path(sandbox_id, f"/sessions/{quote(info.id, safe='')}")
        self.files = AsyncSessionFiles(self, files)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} user={self.user!r}>"

    async def exec(self, cmd: str, timeout: float | None = DEFAULT_TIMEOUT, stdin: str | bytes | None = None,
                   on_stdout: Callable[[str], object] | None = None,
                   on_stderr: Callable[[str], object] | None = None, check: bool = False) -> CommandResult:
        """Run `cmd` in the session's shell and return its CommandResult (stdout, stderr,
        exit_code, duration). A non-zero exit code is returned, not raised, unless `check=True`
        (then CommandExitError). `stdin` is the command's input; without it stdin is empty, so
        nothing waits for input. `timeout` (seconds, None or 0 = none): past it the command is
        interrupted like Ctrl-C (then killed if it ignores that) and TimeoutError is raised with
        the output so far in `details["result"]`; the session and its state stay usable.
        `on_stdout`/`on_stderr` get text as it arrives (plain or coroutine functions). `exit` in
        `cmd` ends the session (its exit code is returned)."""
        body: dict[str, Any] = {"cmd": cmd, "timeout": timeout or 0}
        if isinstance(stdin, bytes):
            body["stdinBase64"] = base64.b64encode(stdin).decode()
        elif stdin is not None:
            body["stdin"] = stdin
        http_timeout = timeout + HTTP_MARGIN if timeout else None
        started = time.monotonic()
        if on_stdout is None and on_stderr is None:
            data = (await self._transport.api("POST", self._path + "/exec", json=body, timeout=http_timeout)).json()
            stdout, stderr, end = data["stdout"], data["stderr"], data
        else:
            stdout, stderr, end = await self._stream(body, http_timeout, on_stdout, on_stderr)
        result = CommandResult(stdout, stderr, end["exitCode"], None, time.monotonic() - started)
        if end["timedOut"]:
            raise E.TimeoutError(f"the command did not finish within {timeout}s (it was interrupted; the session "
                                 f"stays): {cmd[:200]}", result=result)
        if check and result.exit_code != 0:
            raise E.CommandExitError(result.stdout, result.stderr, result.exit_code)
        return result

    async def _stream(self, body: dict[str, Any], http_timeout: float | None,
                      on_stdout: Callable[[str], object] | None,
                      on_stderr: Callable[[str], object] | None) -> tuple[str, str, dict[str, Any]]:
        parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        async with self._transport.open_api("POST", self._path + "/exec", json={**body, "stream": True},
                                            timeout=http_timeout) as response:
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                for kind in parts:
                    if kind in event:
                        parts[kind].append(event[kind])
                        await call_back(callbacks[kind], event[kind])
                if "error" in event:
                    raise error_for_status(event["error"]["code"], event["error"]["message"])
                if "end" in event:
                    end: dict[str, Any] = event["end"]
                    return "".join(parts["stdout"]), "".join(parts["stderr"]), end
        raise E.SandlotError("the session's output stream ended without a result", lost=True)

    async def get_info(self) -> SessionInfo:
        """The session's current state (its shell's cwd, whether a command runs)."""
        response = await self._transport.api("GET", self._path)
        return SessionInfo.from_json(response.json())

    async def cwd(self) -> str:
        """The shell's current directory."""
        cwd = (await self.get_info()).cwd
        if cwd is None:
            raise E.SandboxNotRunning(f"session {self.id} has no shell any more")
        return cwd

    async def delete(self) -> bool:
        """End the session: its shell and everything it started are killed. False if it had
        already ended."""
        try:
            await self._transport.api("DELETE", self._path)
        except E.NotFound:
            return False
        return True

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.delete()
        except E.SandboxNotRunning:
            pass


class AsyncSessionFiles:
    """`session.files`: the sandbox's files, with relative paths resolved against the session's
    current directory (where a `cd` left it) and the session's user acting."""

    def __init__(self, session: AsyncSession, files: AsyncFiles):
        self._session = session
        self._files = files

    async def _abs(self, path: str) -> str:
        return path if posixpath.isabs(path) else posixpath.join(await self._session.cwd(), path)

    @overload
    async def read(self, path: str, format: Literal["text"] = "text") -> str: ...

    @overload
    async def read(self, path: str, format: Literal["bytes"]) -> bytes: ...

    @overload
    async def read(self, path: str, format: Literal["stream"]) -> AsyncIterator[bytes]: ...

    @overload
    async def read(self, path: str,
                   format: Literal["text", "bytes", "stream"] = "text") -> str | bytes | AsyncIterator[bytes]: ...

    async def read(self, path: str,  # noqa: A002 - E2B's name
                   format: Literal["text", "bytes", "stream"] = "text") -> str | bytes | AsyncIterator[bytes]:
        """A file's contents (as `sandbox.files.read`), a relative `path` from the session's cwd."""
        return await self._files.read(await self._abs(path), format=format, user=self._session.user)

    async def write(self, path: str, data: Data) -> WriteInfo:
        return await self._files.write(await self._abs(path), data, user=self._session.user)

    async def list(self, path: str = ".", depth: int = 1) -> builtins.list[EntryInfo]:
        return await self._files.list(await self._abs(path), depth=depth, user=self._session.user)

    async def exists(self, path: str) -> bool:
        return await self._files.exists(await self._abs(path), user=self._session.user)

    async def get_info(self, path: str) -> EntryInfo:
        return await self._files.get_info(await self._abs(path), user=self._session.user)

    async def make_dir(self, path: str) -> bool:
        return await self._files.make_dir(await self._abs(path), user=self._session.user)

    async def rename(self, old_path: str, new_path: str) -> EntryInfo:
        return await self._files.rename(await self._abs(old_path), await self._abs(new_path), user=self._session.user)

    async def remove(self, path: str) -> None:
        await self._files.remove(await self._abs(path), user=self._session.user)


async def create_session(transport: Transport, sandbox_id: str, files: AsyncFiles, session_id: str | None,
                         cwd: str | None, envs: dict[str, str] | None, user: str | None) -> AsyncSession:
    body = {k: v for k, v in (("id", session_id), ("cwd", cwd), ("envs", envs), ("user", user)) if v is not None}
    response = await transport.api("POST", sandbox_path(sandbox_id, "/sessions"), json=body)
    return AsyncSession(transport, sandbox_id, SessionInfo.from_json(response.json()), files)


async def get_session(transport: Transport, sandbox_id: str, files: AsyncFiles, session_id: str) -> AsyncSession:
    response = await transport.api("GET", sandbox_path(sandbox_id, f"/sessions/{quote(session_id, safe='')}"))
    return AsyncSession(transport, sandbox_id, SessionInfo.from_json(response.json()), files)


async def delete_session(transport: Transport, sandbox_id: str, session_id: str) -> bool:
    try:
        await transport.api("DELETE", sandbox_path(sandbox_id, f"/sessions/{quote(session_id, safe='')}"))
    except E.NotFound:
        return False
    return True


async def list_sessions(transport: Transport, sandbox_id: str) -> list[SessionInfo]:
    response = await transport.api("GET", sandbox_path(sandbox_id, "/sessions"))
    return [SessionInfo.from_json(d) for d in response.json()]
