"""One stdio MCP server, started and spoken to by the gateway: newline-delimited JSON-RPC on its
stdin/stdout (MCP's stdio transport), a reader thread matching answers to requests by id."""

from __future__ import annotations

import itertools
import json
import os
import pwd
import signal
import subprocess
import threading

from ..agent.users import DEFAULT_PATH, User, identity
from .config import ServerConfig

PROTOCOL_VERSION = "2025-06-18"  # what the gateway asks its servers for (they may answer another)
STOP_GRACE = 2.0  # seconds a server gets to exit after its stdin closes, before SIGKILL


class RpcError(Exception):
    """A JSON-RPC error: the server's own (passed on to the client as it is) or the gateway's."""

    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def error(self) -> dict:
        return {"code": self.code, "message": self.message, **({"data": self.data} if self.data is not None else {})}


class ServerFailed(Exception):
    """A server could not be installed, started or initialized; the message says which and why."""


def account(name: str = "user") -> User | None:
    """The sandbox's ordinary account, which E2B runs servers as (its docs' runCmds use `sudo` for
    root); None (root) when the template has no such account."""
    try:
        return User(pwd.getpwnam(name))
    except KeyError:
        return None


def _code(proc: subprocess.Popen) -> str:
    try:
        return f" with code {proc.wait(1)}"
    except subprocess.TimeoutExpired:
        return ""


class StdioServer:
    def __init__(self, config: ServerConfig, log):
        self.config, self.log = config, log  # log: the gateway's log file (the servers' stderr)
        self._ids = itertools.count(1)
        self._pending: dict[int, list] = {}  # id -> [threading.Event, response]
        self._lock = threading.Lock()  # the pending table and _ended
        self._ended = False  # its stdout ended: nothing more will be answered
        self._write = threading.Lock()  # stdin, one message at a time
        self.proc: subprocess.Popen | None = None
        self.tools: list[dict] = []
        self._stderr: list[bytes] = []  # its last lines, for the error if it does not start

    def _run_as(self) -> tuple[dict, str, dict]:
        """Environment, directory and Popen identity arguments, in a session of its own (the server
        is stopped with its children). Not a preexec_fn: the gateway has threads."""
        who = account()
        login = who.environment() if who else {"HOME": "/root", "USER": "root", "PATH": DEFAULT_PATH}
        env = {**login, "LANG": "C.UTF-8", **self.config.env}
        as_who = identity(who) if who else {}
        return env, self.config.cwd or login["HOME"], {"start_new_session": True, **as_who}

    def start(self, timeout: float) -> None:
        """Install (if asked), start, initialize and list its tools; ServerFailed if any step fails."""
        env, cwd, as_who = self._run_as()
        name = self.config.name
        if self.config.install:
            try:
                done = subprocess.run(["/bin/sh", "-c", self.config.install], env=env, cwd=cwd, **as_who,
                                      stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                                      check=False)
            except OSError as e:
                raise ServerFailed(f"MCP server {name}: cannot run its installCmd: {e}") from None
            if done.returncode:
                raise ServerFailed(f"MCP server {name}: its installCmd exited with {done.returncode}: "
                                   f"{(done.stderr or done.stdout).strip()[-2000:]}")
        try:
            self.proc = subprocess.Popen(["/bin/sh", "-c", self.config.command], env=env, cwd=cwd,
                                         **as_who, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except OSError as e:
            raise ServerFailed(f"MCP server {name}: cannot start: {e}") from None
        threading.Thread(target=self._read, daemon=True).start()
        err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        err_reader.start()
        try:
            self.request("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                        "clientInfo": {"name": "sandlot-mcp-gateway", "version": "1"}}, timeout)
            self.notify("notifications/initialized")
            tools, cursor = [], None
            while True:
                page = self.request("tools/list", {"cursor": cursor} if cursor else {}, timeout)
                tools += page.get("tools") or []
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        except RpcError as e:
            try:  # an exit: its last words first
                self.proc.wait(1)
                err_reader.join(1)
            except subprocess.TimeoutExpired:
                pass
            stderr = b"".join(self._stderr).decode(errors="replace").strip()[-2000:]
            raise ServerFailed(f"MCP server {name}: {e.message}" + (f"; its stderr: {stderr}" if stderr else "")) \
                from None
        self.tools = tools

    def request(self, method: str, params: dict | None, timeout: float | None) -> dict:
        """Send a request and wait for its answer: the result, or RpcError."""
        rid = next(self._ids)
        slot = [threading.Event(), None]
        with self._lock:
            ended = self._ended
            if not ended:
                self._pending[rid] = slot
        if ended:
            raise RpcError(-32603, "the server exited" + _code(self.proc))
        try:
            self._send({"jsonrpc": "2.0", "id": rid, "method": method, **({"params": params} if params else {})})
            if not slot[0].wait(timeout):
                raise RpcError(-32001, f"no answer to {method} within {timeout:g} s")
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        reply = slot[1]
        if reply is None:
            raise RpcError(-32603, "the server exited" + _code(self.proc))
        if "error" in reply:
            e = reply["error"] if isinstance(reply["error"], dict) else {}
            code = e.get("code") if isinstance(e.get("code"), int) else -32603
            raise RpcError(code, str(e.get("message", "error")), e.get("data"))
        return reply.get("result") or {}

    def notify(self, method: str) -> None:
        self._send({"jsonrpc": "2.0", "method": method})

    def _send(self, message: dict) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            with self._write:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
        except (OSError, ValueError):
            raise RpcError(-32603, "the server exited" + _code(self.proc)) from None

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a server that prints something else on stdout
            if not isinstance(message, dict):
                continue
            if "method" in message:  # its own requests (roots, sampling): the gateway offers none
                if "id" in message:
                    self._send_quietly({"jsonrpc": "2.0", "id": message["id"],
                                        "error": {"code": -32601, "message": "not offered by the gateway"}})
                continue
            rid = message.get("id")
            with self._lock:
                slot = self._pending.get(rid) if isinstance(rid, int) else None
            if slot is not None:
                slot[1] = message
                slot[0].set()
        with self._lock:  # it exited: nothing more will be answered
            self._ended = True
            for slot in self._pending.values():
                slot[0].set()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr = [*self._stderr[-50:], line]
            self.log.write(f"[{self.config.name}] ".encode() + line)
            self.log.flush()

    def _send_quietly(self, message: dict) -> None:
        try:
            self._send(message)
        except RpcError:
            pass

    def stop(self) -> None:
        """stdin closed, then the process group killed after a grace period."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(STOP_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
