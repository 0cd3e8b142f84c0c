"""`AsyncSandbox`: create, find and manage sandboxes; the async source of the public `Sandbox`."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import time
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from urllib.parse import quote, urlencode

from .. import _exceptions as E
from ._code import AsyncCodeInterpreter
from ._commands import AsyncCommands
from ._config import ConnectionConfig
from ._files import AsyncFiles
from ._http import Envd, Transport
from ._models import CodeContext, Execution, Limits, SandboxInfo, SandboxMetrics
from ._packages import AsyncPackages
from ._pty import AsyncPty


def _limits_json(limits: Limits | Mapping) -> dict:
    if isinstance(limits, Mapping):
        try:
            limits = Limits(**limits)
        except TypeError as e:
            raise E.InvalidArgument(f"unknown limit: {e}") from None
    return dataclasses.asdict(limits.validate())


class _instance_or_id:
    """A control-plane method written once for an instance, also callable on the class with an id:
    `await sandbox.kill()` and `await AsyncSandbox.kill("sbx123", api_url=..., api_key=...)`."""

    def __init__(self, method):
        self._method = method
        functools.update_wrapper(self, method)

    def __get__(self, obj, cls):
        if obj is not None:
            return types.MethodType(self._method, obj)
        method = self._method

        @functools.wraps(method)
        async def by_id(sandbox_id: str, *args, api_url: str | None = None, api_key: str | None = None, **kwargs):
            sandbox = cls(sandbox_id, Transport(await ConnectionConfig.resolve(api_url, api_key)))
            try:
                return await method(sandbox, *args, **kwargs)
            finally:
                await sandbox.close()

        return by_id


class AsyncSandbox:
    """An isolated Linux machine for running untrusted code.

        from sandlot import AsyncSandbox

        async with await AsyncSandbox.create(timeout=600) as sandbox:     # killed on exit
            await sandbox.files.write("hello.py", "print('hi')")
            result = await sandbox.commands.run("python3 hello.py")
            print(result.stdout, result.duration)

    The server is `api_url` / $SANDLOT_API_URL with `api_key` / $SANDLOT_API_KEY; with neither URL,
    a server embedded in this process is started on first use. `Sandbox` is the blocking form.
    """

    def __init__(self, sandbox_id: str, transport: Transport, access_token: str | None = None,
                 template_id: str | None = None):
        """Internal: use `create()`, `connect()`."""
        self.sandbox_id = sandbox_id
        self.template_id = template_id
        self._transport = transport
        self._envd = Envd(transport, sandbox_id, access_token)
        self.commands = AsyncCommands(self._envd)
        self.files = AsyncFiles(self._envd, self.commands)
        self.pty = AsyncPty(self._envd)
        self.packages = AsyncPackages(transport, sandbox_id)
        self._code = AsyncCodeInterpreter(self._envd)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sandbox_id} template={self.template_id!r}>"

    @property
    def api_url(self) -> str:
        """The server this sandbox lives on."""
        return self._transport.config.api_url

    @classmethod
    def _from_json(cls, data: dict, transport: Transport) -> AsyncSandbox:
        return cls(data["sandboxID"], transport, data.get("envdAccessToken"), data.get("templateID"))

    @classmethod
    async def create(cls, template: str = "base", timeout: int = 300, metadata: dict[str, str] | None = None,
                     envs: dict[str, str] | None = None, limits: Limits | Mapping | None = None,
                     api_url: str | None = None, api_key: str | None = None) -> AsyncSandbox:
        """Start a sandbox from `template` that lives `timeout` seconds unless extended.

        `metadata` is yours to filter `list()` by; `envs` are set for every command; `limits` is a
        `Limits` or a dict with `memory_mb`, `cpu_count`, `pids`, `disk_mb`.
        """
        body = {"templateID": template, "timeout": timeout, "metadata": metadata or {}, "envVars": envs or {}}
        if limits is not None:
            body["limits"] = _limits_json(limits)
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key))
        response = await transport.api("POST", "/v2/sandboxes", json=body)
        return cls._from_json(response.json(), transport)

    @classmethod
    async def connect(cls, sandbox_id: str, timeout: int | None = None, api_url: str | None = None,
                      api_key: str | None = None) -> AsyncSandbox:
        """Attach to an existing sandbox, resuming it if paused. `timeout` only ever extends its life."""
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key))
        body = {"timeout": timeout} if timeout is not None else {}
        response = await transport.api("POST", f"/v2/sandboxes/{quote(sandbox_id, safe='')}/connect", json=body)
        return cls._from_json(response.json(), transport)

    @classmethod
    def list(cls, metadata: dict[str, str] | None = None, state: str | Iterable[str] | None = None,
             limit: int | None = None, order: str | None = None, api_url: str | None = None,
             api_key: str | None = None) -> AsyncSandboxPaginator:
        """Sandboxes on the server, newest first (`order="asc"`: oldest first): iterate over all
        of them (`async for`), or fetch page by page with `next_items()`. Filters: `metadata` (all
        pairs must match), `state` ("running", "paused" or both); `limit` is the page size (at
        most 100)."""
        if order not in (None, "asc", "desc"):
            raise E.InvalidArgument(f"order must be 'asc' or 'desc', got {order!r}")
        params: dict[str, str | int] = {}
        if metadata:
            # Keys and values quoted, then joined by urlencode (quoting them again), then quoted once
            # more as a query value: the three layers the e2b SDK sends and the server undoes (§3.2).
            quoted = {quote(k, safe=""): quote(v, safe="") for k, v in metadata.items()}
            params["metadata"] = urlencode(quoted)
        if state:
            params["state"] = state if isinstance(state, str) else ",".join(state)
        if limit:
            params["limit"] = limit
        if order:
            params["order"] = order
        return AsyncSandboxPaginator(params, api_url, api_key)

    def _path(self, suffix: str = "") -> str:
        return f"/sandboxes/{quote(self.sandbox_id, safe='')}{suffix}"

    @_instance_or_id
    async def kill(self) -> bool:
        """Kill the sandbox now. False if it did not exist (any more)."""
        try:
            await self._transport.api("DELETE", self._path())
        except E.NotFound:
            return False
        return True

    @_instance_or_id
    async def set_timeout(self, timeout: int) -> None:
        """Make the sandbox end `timeout` seconds from now (this may shorten its life)."""
        await self._transport.api("POST", self._path("/timeout"), json={"timeout": timeout})

    @_instance_or_id
    async def get_info(self) -> SandboxInfo:
        response = await self._transport.api("GET", self._path())
        return SandboxInfo.from_json(response.json())

    @_instance_or_id
    async def get_metrics(self, start: datetime | float | None = None,
                          end: datetime | float | None = None) -> list[SandboxMetrics]:
        """CPU, memory and disk usage, oldest first: the server samples every 5 s (an hour is
        kept) and adds a reading taken now; `start`/`end` (datetime or unix seconds) narrow it."""
        params = {name: value.timestamp() if isinstance(value, datetime) else value
                  for name, value in (("start", start), ("end", end)) if value is not None}
        response = await self._transport.api("GET", self._path("/metrics"), params=params)
        return [SandboxMetrics.from_json(d) for d in response.json()]

    @_instance_or_id
    async def pause(self) -> bool:
        """Freeze the sandbox; `resume()` or `connect()` continues it. False if already paused."""
        try:
            await self._transport.api("POST", self._path("/pause"))
        except E.AlreadyExists:
            return False
        return True

    async def resume(self, timeout: int | None = None) -> None:
        """Continue a paused sandbox (a running one just has its timeout extended)."""
        body = {"timeout": timeout} if timeout is not None else {}
        response = await self._transport.api("POST", f"/v2{self._path('/connect')}", json=body)
        self._envd.access_token = response.json().get("envdAccessToken") or self._envd.access_token

    async def is_running(self) -> bool:
        """False once the sandbox was killed, expired or paused."""
        return await self._envd.is_running()

    # --- code interpreter: sandboxes of the `code-interpreter` template (others raise NotFound) ---

    async def run_code(self, code: str, language: str | None = None, context: CodeContext | str | None = None,
                       envs: dict[str, str] | None = None, timeout: float | None = None,
                       on_stdout: Callable | None = None, on_stderr: Callable | None = None,
                       on_result: Callable | None = None, on_error: Callable | None = None) -> Execution:
        """Run `code` in a stateful kernel and return its Execution: results (the last expression's
        value is the main one, `execution.text`; plots and `display()` calls add more), logs and
        the error the code raised, if any (an error in the code does not raise here).

            execution = await sandbox.run_code("x = 6 * 7\\nx")
            assert execution.text == "42"

        Without `language` or `context`, the default python context runs it; `language` ("python",
        "bash") picks that language's default context, `context` a context of
        `create_code_context()` (not both: InvalidArgument). `envs` are set for this run only.
        `timeout` bounds the whole run (default 300 s, 0 = none): past it the kernel is interrupted
        (the context keeps its state) and TimeoutError is raised, its `details["execution"]` holding
        what the run produced until then. Callbacks get output as it arrives:
        `on_stdout`/`on_stderr` an OutputMessage, `on_result` a Result, `on_error` an
        ExecutionError; they may be coroutine functions.
        """
        return await self._code.run_code(code, language=language, context=context, envs=envs, timeout=timeout,
                                         on_stdout=on_stdout, on_stderr=on_stderr, on_result=on_result,
                                         on_error=on_error)

    async def create_code_context(self, language: str = "python", cwd: str | None = None,
                                  variables: dict | None = None, envs: dict[str, str] | None = None) -> CodeContext:
        """A new context: its own kernel and state, starting in `cwd` (default /home/user).
        `variables` ({name: JSON value}) are defined in its namespace before first use; `envs` are
        its environment variables."""
        return await self._code.create_code_context(language=language, cwd=cwd, variables=variables, envs=envs)

    async def list_code_contexts(self) -> list[CodeContext]:
        """The sandbox's code contexts, oldest first (the default ones included)."""
        return await self._code.list_code_contexts()

    async def restart_code_context(self, context: CodeContext | str) -> None:
        """Restart a context's kernel: its state is cleared, its id stays."""
        await self._code.restart_code_context(context)

    async def remove_code_context(self, context: CodeContext | str) -> None:
        """Stop a context's kernel and forget the context."""
        await self._code.remove_code_context(context)

    def download_url(self, path: str, user: str | None = None, expires_in: int | None = None) -> str:
        """A URL that downloads `path` with a plain GET, no credentials; valid `expires_in` seconds
        (forever if None, until the sandbox ends)."""
        return self._signed_url(path, "read", user, expires_in)

    def upload_url(self, path: str, user: str | None = None, expires_in: int | None = None) -> str:
        """A URL that accepts a multipart POST of one file to `path`, no credentials needed."""
        return self._signed_url(path, "write", user, expires_in)

    def _signed_url(self, path: str, operation: str, user: str | None, expires_in: int | None) -> str:
        token = self._envd.access_token
        if not token:
            raise E.InvalidArgument("this sandbox has no access token, its files need no signature")
        raw = f"{path}:{operation}:{user or ''}:{token}"  # e2b-protocol.md §4.11
        query = {"path": path, **({"username": user} if user else {})}
        if expires_in is not None:
            expiration = int(time.time()) + expires_in
            raw += f":{expiration}"
        digest = base64.b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()
        query["signature"] = "v1_" + digest
        if expires_in is not None:
            query["signature_expiration"] = str(expiration)
        return f"{self.api_url}/files?{urlencode(query, quote_via=quote)}"

    # ---- ports in: preview URLs (issue 12; server/proxy.py) --------------------------------

    async def expose_port(self, port: int, ttl: int = 3600) -> str:
        """A signed URL to `port` in this sandbox, valid for `ttl` seconds (at most a week) even
        where its traffic is private; exposing the port again replaces the URL."""
        response = await self._transport.api("POST", self._path(f"/ports/{port}/expose"), json={"ttl": ttl})
        return response.json()["url"]

    async def unexpose_port(self, port: int) -> None:
        """Revoke the port's preview URL."""
        await self._transport.api("DELETE", self._path(f"/ports/{port}/expose"))

    async def list_exposed_ports(self) -> list[dict]:
        """The ports with a live preview URL: [{"port", "url", "expiresAt"}]."""
        return (await self._transport.api("GET", self._path("/ports"))).json()

    async def is_port_exposed(self, port: int) -> bool:
        return any(p["port"] == port for p in await self.list_exposed_ports())

    async def wait_for_port(self, port: int, timeout: float = 30) -> None:
        """Return once something in the sandbox accepts connections on `port` (the server
        watches; raises TimeoutError after `timeout` seconds)."""
        await self._transport.api("POST", self._path(f"/ports/{port}/wait"), json={"timeout": timeout},
                                  timeout=timeout + 10)

    async def close(self) -> None:
        """Release this object's connections; the sandbox keeps running."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.kill()
        except E.SandboxNotRunning:
            pass
        finally:
            await self.close()


class AsyncSandboxPaginator:
    """Pages of `AsyncSandbox.list()`. Iterate for every sandbox, or call `next_items()` while
    `has_next`."""

    def __init__(self, params: dict, api_url: str | None, api_key: str | None):
        self._params = params
        self._api_url, self._api_key = api_url, api_key
        self._transport: Transport | None = None
        self.has_next = True
        self.next_token: str | None = None

    async def next_items(self) -> list[SandboxInfo]:
        """The next page (empty once there are no more)."""
        if not self.has_next:
            return []
        if self._transport is None:
            self._transport = Transport(await ConnectionConfig.resolve(self._api_url, self._api_key))
        params = {**self._params, **({"nextToken": self.next_token} if self.next_token else {})}
        response = await self._transport.api("GET", "/v2/sandboxes", params=params)
        self.next_token = response.headers.get("X-Next-Token") or None
        self.has_next = self.next_token is not None
        if not self.has_next:
            await self._transport.aclose()
        return [SandboxInfo.from_json(d) for d in response.json()]

    async def __aiter__(self) -> AsyncIterator[SandboxInfo]:
        while self.has_next:
            for info in await self.next_items():
                yield info
