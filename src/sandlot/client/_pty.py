"""`sandbox.pty`: interactive terminals (a login shell on a pseudo-terminal)."""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import process_pb2 as pb
from ._commands import AsyncCommandHandle, AsyncCommands, send_input_to, attach
from ._http import Envd

TERMINAL_ENVS = {"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _size(cols: int, rows: int) -> pb.PTY:
    return pb.PTY(size=pb.PTY.Size(cols=cols, rows=rows))


class AsyncPty:
    """Terminals in the sandbox (`sandbox.pty`). Output is raw bytes, as a terminal emulator wants it.

        term = await sandbox.pty.create(cols=80, rows=24, on_data=lambda b: print(b.decode(), end=""))
        await sandbox.pty.send_input(term.pid, b"echo hi; exit\\n")
        await term.wait()
    """

    def __init__(self, envd: Envd):
        self._envd = envd

    async def create(self, cols: int = 80, rows: int = 24, on_data: Callable[[bytes], object] | None = None,
                     cwd: str | None = None, envs: dict[str, str] | None = None, user: str | None = None,
                     timeout: float | None = None, request_timeout: float | None = None) -> AsyncCommandHandle:
        """Start `/bin/bash -i -l` on a terminal of `cols` x `rows`. The handle's iteration and
        `on_data` carry the terminal output; `timeout` (seconds, None = no limit) ends the session;
        `request_timeout` bounds the wait for the shell to start."""
        config = pb.ProcessConfig(cmd="/bin/bash", args=["-i", "-l"], envs={**TERMINAL_ENVS, **(envs or {})})
        if cwd:
            config.cwd = cwd
        request = pb.StartRequest(process=config, pty=_size(cols, rows))
        events = self._envd.stream(self._envd.process.start, request, user=user, timeout=timeout)
        return await attach(self._envd, events, request_timeout, on_pty=on_data, check=False, pty=True)

    async def connect(self, pid: int, on_data: Callable[[bytes], object] | None = None,
                      request_timeout: float | None = None) -> AsyncCommandHandle:
        """Attach to a running terminal session."""
        events = self._envd.stream(self._envd.process.connect, pb.ConnectRequest(process=pb.ProcessSelector(pid=pid)))
        return await attach(self._envd, events, request_timeout, on_pty=on_data, check=False, pty=True)

    async def send_input(self, pid: int, data: str | bytes, request_timeout: float | None = None) -> None:
        """Type into the terminal (keys, control characters such as b"\\x03" for Ctrl-C)."""
        await send_input_to(self._envd, pid, data, "pty", request_timeout)

    async def resize(self, pid: int, cols: int, rows: int, request_timeout: float | None = None) -> None:
        """Change the terminal size (the shell gets SIGWINCH)."""
        request = pb.UpdateRequest(process=pb.ProcessSelector(pid=pid), pty=_size(cols, rows))
        await self._envd.call(self._envd.process.update, request, request_timeout=request_timeout)

    async def kill(self, pid: int, request_timeout: float | None = None) -> bool:
        """End the session. False if it had already ended."""
        return await AsyncCommands(self._envd).kill(pid, request_timeout=request_timeout)
