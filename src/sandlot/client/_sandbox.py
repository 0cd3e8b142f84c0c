"""`AsyncSandbox`: create, find and manage sandboxes; the async source of the public `Sandbox`.

Over 400 lines because each of the methods also callable by id (`kill`, `set_timeout`, `get_info`,
`get_metrics`, `get_logs`, `pause`, `create_snapshot`, `fork`) carries its two overload signatures
for type checkers, and because it is the sandbox's whole public surface: each other method is a
documented line or two onto the module that does the work (_sessions.py, _workspace.py,
_snapshots.py, _code.py, _state.py...); the sandbox's ports (preview URLs, waits) are methods of
the sandbox, as in E2B's and Cloudflare's SDKs.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import time
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast, overload
from urllib.parse import quote, urlencode, urlsplit

import httpx

from .. import _exceptions as E
from .._exceptions import SandlotError
from ..limits import SecurityPolicy
from ..permissions import PermissionRule
from . import _mcp, _network, _sessions, _snapshots, _state, _workspace
from ._code import AsyncCodeInterpreter
from ._codebases import AsyncCodebase
from ._commands import AsyncCommands, wait_for_port
from ._config import ConnectionConfig
from ._files import AsyncFiles
from ._http import Envd, Transport, sandbox_path
from ._models import (
    CodeContext, Execution, ExecutionError, ExposedPort, Limits, OutputMessage, Result, SandboxInfo, SandboxLogEntry,
    SandboxMetrics,
)
from ._packages import AsyncPackages
from ._pty import AsyncPty
from ._sessions import AsyncSession, SessionInfo
from ._snapshots import PauseMode, SnapshotExport, SnapshotInfo, VolumeRef

log = logging.getLogger("sandlot")
BUILD_POLL = 2.0  # seconds between creates while the template is being built
BUILD_LOG_STEP, BUILD_LOG_EVERY = 10, 30.0  # percent, seconds


def _limits_json(limits: Limits | Mapping[str, float]) -> dict[str, float]:
    if isinstance(limits, Mapping):
        try:
            limits = Limits(**limits)  # type: ignore[arg-type]  # checked by validate()
        except TypeError as e:
            raise E.InvalidArgument(f"unknown limit: {e}") from None
    return dataclasses.asdict(limits.validate())


F = TypeVar("F", bound=Callable[..., Any])


def _instance_or_id(method: F) -> F:
    """A control-plane method written once for an instance, also callable on the class with an id:
    `await sandbox.kill()` and `await AsyncSandbox.kill("sbx123", api_url=..., api_key=...)`.
    Type checkers see the two forms as the overloads written above each such method."""
    return cast(F, _InstanceOrId(method))


class _InstanceOrId:
    def __init__(self, method: Callable[..., Any]):
        self._method = method
        functools.update_wrapper(cast(Any, self), method)

    def __get__(self, obj: AsyncSandbox | None, cls: type[AsyncSandbox]) -> Callable[..., Any]:
        if obj is not None:
            return types.MethodType(self._method, obj)
        method = self._method

        @functools.wraps(method)
        async def by_id(sandbox_id: str, *args: Any, api_url: str | None = None, api_key: str | None = None,
                        ca_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
            config = await ConnectionConfig.resolve(api_url, api_key, kwargs.get("request_timeout"), ca_file)
            sandbox = cls(sandbox_id, Transport(config))
            try:
                return await method(sandbox, *args, **kwargs)
            finally:
                await sandbox.close()

        return by_id


async def _create(transport: Transport, body: dict[str, Any]) -> httpx.Response:
    """POST the create; while the server builds the template it needs, wait and say how far it got
    (a line per BUILD_LOG_STEP percent or BUILD_LOG_EVERY seconds)."""
    said_percent, said_at = -BUILD_LOG_STEP, 0.0
    while True:
        try:
            return await transport.api("POST", "/v2/sandboxes", json=body)
        except E.TemplateBuilding as building:
            percent, now = building.details.get("progress", 0), time.monotonic()
            if percent // BUILD_LOG_STEP != said_percent // BUILD_LOG_STEP or now - said_at >= BUILD_LOG_EVERY:
                log.warning("waiting for template %s to be built on the server (first use only): %d %%, %s",
                            building.details.get("template"), percent, building.details.get("step") or "")
                said_percent, said_at = percent, now
        await asyncio.sleep(BUILD_POLL)


class AsyncSandbox:
    """An isolated Linux machine for running untrusted code.

        from sandlot import AsyncSandbox

        async with await AsyncSandbox.create(timeout=600) as sandbox:     # killed on exit
            await sandbox.files.write("hello.py", "print('hi')")
            result = await sandbox.commands.run("python3 hello.py")
            print(result.stdout, result.duration)

    The server is `api_url` / $SANDLOT_API_URL with `api_key` / $SANDLOT_API_KEY; with neither URL,
    a server embedded in this process is started on first use. A server with TLS whose certificate
    the system does not trust (`sandlot serve --tls local-ca`) is verified against `ca_file` /
    $SANDLOT_CA_FILE (its CA's PEM file, `sandlot ca`), trusted besides the system's CAs. Every
    call that talks to the server takes `request_timeout` (seconds, 0 = no limit); the one given to
    `create()` or `connect()` is the sandbox's default (else 60 s).
    """

    sandbox_id: str
    """The sandbox's id, e.g. for `connect()` from another process."""
    template_id: str | None
    """The template it was created from."""
    commands: AsyncCommands
    """Shell commands (`sandbox.commands.run("ls")`)."""
    files: AsyncFiles
    """The sandbox's files."""
    pty: AsyncPty
    """Interactive terminals."""
    packages: AsyncPackages
    """Python packages, installed without network access for the sandbox."""

    def __init__(self, sandbox_id: str, transport: Transport, access_token: str | None = None,
                 template_id: str | None = None, domain: str | None = None):
        """Internal: use `create()`, `connect()`."""
        self._transport = transport
        self._domain = domain  # the server's, from its create/connect answer (`serve --domain`)
        self._own_codebase: AsyncCodebase | None = None  # from_local's: kill() deletes it
        self._attach(sandbox_id, access_token, template_id)

    def _attach(self, sandbox_id: str, access_token: str | None, template_id: str | None) -> None:
        """Stand for the sandbox `sandbox_id`: at creation, and for the fresh one after `reset()`."""
        self.sandbox_id = sandbox_id
        self.template_id = template_id
        self._mcp_token: str | None = None
        self._envd = Envd(self._transport, sandbox_id, access_token)
        self.commands = AsyncCommands(self._envd)
        self.files = AsyncFiles(self._envd, self.commands)
        self.pty = AsyncPty(self._envd)
        self.packages = AsyncPackages(self._transport, sandbox_id)
        self._code = AsyncCodeInterpreter(self._envd)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sandbox_id} template={self.template_id!r}>"

    @property
    def api_url(self) -> str:
        """The server this sandbox lives on."""
        return self._transport.config.api_url

    @classmethod
    def _from_json(cls, data: dict[str, Any], transport: Transport) -> AsyncSandbox:
        return cls(data["sandboxID"], transport, data.get("envdAccessToken"), data.get("templateID"),
                   data.get("domain") or None)

    @classmethod
    async def create(cls, template: str | None = None, timeout: int = 300, metadata: dict[str, str] | None = None,
                     envs: dict[str, str] | None = None, limits: Limits | Mapping[str, float] | None = None,
                     api_url: str | None = None, api_key: str | None = None,
                     request_timeout: float | None = None,
                     volume_mounts: Mapping[str, str | VolumeRef] | None = None, *,
                     codebase: AsyncCodebase | str | None = None, preset: str | None = None,
                     permissions: _workspace.Rules | None = None, workspace_path: str | None = None,
                     security: SecurityPolicy | Mapping[str, Any] | None = None,
                     ca_file: str | os.PathLike[str] | None = None,
                     mcp: Mapping[str, Any] | None = None, allow_internet_access: bool | None = None,
                     network: Mapping[str, Any] | None = None,
                     iam: Mapping[str, Any] | None = None) -> AsyncSandbox:
        """Start a sandbox from `template` (or a snapshot's id or name; None: the server's default
        template, `base` unless its operator set SANDLOT_DEFAULT_TEMPLATE) that lives `timeout`
        seconds unless extended.

        `metadata` is yours to filter `list()` by; `envs` are set for every command; `limits` is a
        `Limits` (or `Limits.minimal()`, `.standard()`, `.high_performance()`) or a dict with
        `memory_mb`, `cpu_count`, `pids`, `disk_mb`; `volume_mounts` maps sandbox paths to volumes
        (`AsyncVolume` objects or their names). The first use of a template on a server may build
        it (minutes): create() then waits, logging the build's progress on the `sandlot` logger
        (shown on stderr unless logging is configured).

        Workspace (docs/permissions.md): `codebase` (an AsyncCodebase or its id) appears at
        `workspace_path` (default /workspace) with path permissions: a `preset` ("view-only", the
        default, "read-only", "agent-safe", "development", "full-access") extended by `permissions`
        (PermissionRule or {"pattern", "permission", "priority"?, "type"?}). Permissions without a
        codebase give an empty workspace. Its changes stay the sandbox's until `commit()`.
        `security`: a SecurityPolicy (or dict of its fields): shell, subprocesses, file writes,
        blocked paths, output size, blocked imports (advisory only), audit.

        `mcp`: E2B's MCP gateway (docs/mcp.md), its configuration shape (`{"name": {"runCmd": ...,
        "installCmd": ..., "envs": {...}}}`): the sandbox is of template `mcp-gateway` unless
        `template` names one (built from it), and the gateway starts before create() returns;
        reach it at `get_mcp_url()` with `get_mcp_token()`. If it cannot start, the sandbox is
        killed and McpGatewayError says why.

        Network (docs/network.md): none unless asked. `network` takes E2B's SDK's keys:
        `allow_out`, `deny_out` (addresses, CIDRs, names, `*.` names), `dns_servers`,
        `rules` (`{host: [{"transform": {"headers": {...}}}]}`), `egress_proxy` (a SOCKS5
        `{"address", "username"?, "password"?}`), `bandwidth_mbps`, and for ports in
        `allow_public_traffic`, `mask_request_host`, `https_ports`. `allow_internet_access=True`
        opens what `deny_out` does not close. `iam={"tokens": {name: {"audience": ...,
        "token_type": "JWT-SVID"}}}` registers workload tokens for `${e2b.identity.tokens.<name>}`
        in rule headers. An unknown key is InvalidArgument:

            await AsyncSandbox.create(network={"allow_out": ["api.example.com"], "deny_out": ["0.0.0.0/0"]})
        """
        gateway = _mcp.config_json(mcp) if mcp is not None else None
        if gateway is not None and template is None:
            template = _mcp.MCP_TEMPLATE
        body: dict[str, Any] = {"timeout": timeout, "metadata": metadata or {}, "envVars": envs or {},
                                **_workspace.create_fields(codebase, preset, permissions, workspace_path, security),
                                **_network.create_fields(allow_internet_access, network, iam)}
        if template is not None:
            body["templateID"] = template
        if volume_mounts:
            body["volumeMounts"] = [{"name": v if isinstance(v, str) else v.name, "path": p}
                                    for p, v in volume_mounts.items()]
        if limits is not None:
            body["limits"] = _limits_json(limits)
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key, request_timeout, ca_file))
        try:
            response = await _create(transport, body)
        except BaseException:
            await transport.aclose()
            raise
        sandbox = cls._from_json(response.json(), transport)
        if gateway is not None:
            try:
                sandbox._mcp_token = await _mcp.start_gateway(sandbox.commands, sandbox.sandbox_id, gateway)
            except BaseException:  # a sandbox without the gateway it was made for is killed and closed
                with contextlib.suppress(E.SandlotError):
                    await sandbox.kill()
                await sandbox.close()
                raise
        return sandbox

    @classmethod
    async def from_local(cls, path: str | os.PathLike[str], preset: str | None = None,
                         permissions: _workspace.Rules | None = None, *, exclude: Iterable[str] = (),
                         template: str | None = None, timeout: int = 300, workspace_path: str | None = None,
                         security: SecurityPolicy | Mapping[str, Any] | None = None,
                         metadata: dict[str, str] | None = None, envs: dict[str, str] | None = None,
                         limits: Limits | Mapping[str, float] | None = None, api_url: str | None = None,
                         api_key: str | None = None, request_timeout: float | None = None,
                         ca_file: str | os.PathLike[str] | None = None) -> AsyncSandbox:
        """AgentFense's one step: upload the local directory `path` as a new codebase and start a
        sandbox with it at /workspace under `preset` (default "view-only") and `permissions`. The
        codebase belongs to the sandbox: `kill()` (and the end of an `async with` block) deletes it.
        `exclude`: names to leave out at any depth, e.g. (".git", "node_modules").

            async with await AsyncSandbox.from_local("./my-project", preset="agent-safe") as sandbox:
                result = await sandbox.commands.run("python analyze.py", cwd="/workspace")
        """
        sandbox, codebase = await _workspace.from_local(
            cls.create, path, exclude, api_url, api_key, request_timeout, ca_file, template=template, timeout=timeout,
            preset=preset, permissions=permissions, workspace_path=workspace_path, security=security, metadata=metadata,
            envs=envs, limits=limits)
        sandbox._own_codebase = codebase
        return sandbox

    @classmethod
    async def connect(cls, sandbox_id: str, timeout: int | None = None, api_url: str | None = None,
                      api_key: str | None = None, request_timeout: float | None = None, *,
                      ca_file: str | os.PathLike[str] | None = None) -> AsyncSandbox:
        """Attach to an existing sandbox, resuming it if paused. `timeout` only ever extends its life."""
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key, request_timeout, ca_file))
        body = {"timeout": timeout} if timeout is not None else {}
        response = await transport.api("POST", f"/v2/sandboxes/{quote(sandbox_id, safe='')}/connect", json=body)
        return cls._from_json(response.json(), transport)

    @classmethod
    def list(cls, metadata: dict[str, str] | None = None, state: str | Iterable[str] | None = None,
             limit: int | None = None, order: str | None = None, api_url: str | None = None,
             api_key: str | None = None, request_timeout: float | None = None, *,
             ca_file: str | os.PathLike[str] | None = None) -> AsyncSandboxPaginator:
        """Sandboxes on the server, newest first (`order="asc"`: oldest first): iterate over all
        of them (`async for`), or fetch page by page with `next_items()`. Filters: `metadata` (all
        pairs must match), `state` ("running", "paused" or both); `limit` is the page size (at
        most 100); `request_timeout` bounds each page's request."""
        if order not in (None, "asc", "desc"):
            raise E.InvalidArgument(f"order must be 'asc' or 'desc', got {order!r}")
        params: dict[str, str | int] = {}
        if metadata:
            # Keys and values quoted, then joined by urlencode (quoting them again), then quoted once
            # more as a query value: the three layers the e2b SDK sends and the server undoes (docs/e2b.md §2.5).
            quoted = {quote(k, safe=""): quote(v, safe="") for k, v in metadata.items()}
            params["metadata"] = urlencode(quoted)
        if state:
            params["state"] = state if isinstance(state, str) else ",".join(state)
        if limit:
            params["limit"] = limit
        if order:
            params["order"] = order
        return AsyncSandboxPaginator(params, api_url, api_key, request_timeout, ca_file)

    def _path(self, suffix: str = "") -> str:
        return sandbox_path(self.sandbox_id, suffix)

    # Methods of one sandbox that also take its id on the class: each has an overload per form.

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def kill(self, request_timeout: float | None = None) -> bool: ...

    @overload
    @staticmethod
    async def kill(sandbox_id: str, request_timeout: float | None = None, *, api_url: str | None = None,
                   api_key: str | None = None, ca_file: str | os.PathLike[str] | None = None) -> bool: ...

    @_instance_or_id  # type: ignore[misc]
    async def kill(self, request_timeout: float | None = None) -> bool:
        """Kill the sandbox now (and the codebase `from_local` made for it). False if it did not
        exist (any more)."""
        try:
            await self._transport.api("DELETE", self._path(), request_timeout=request_timeout)
        except E.NotFound:
            return False
        finally:
            codebase, self._own_codebase = self._own_codebase, None
            if codebase is not None:
                await _workspace.drop_codebase(codebase)
        return True

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def set_timeout(self, timeout: int, request_timeout: float | None = None) -> None: ...

    @overload
    @staticmethod
    async def set_timeout(sandbox_id: str, timeout: int, request_timeout: float | None = None, *,
                          api_url: str | None = None, api_key: str | None = None,
                          ca_file: str | os.PathLike[str] | None = None) -> None: ...

    @_instance_or_id  # type: ignore[misc]
    async def set_timeout(self, timeout: int, request_timeout: float | None = None) -> None:
        """Make the sandbox end `timeout` seconds from now (this may shorten its life)."""
        await self._transport.api("POST", self._path("/timeout"), json={"timeout": timeout},
                                  request_timeout=request_timeout)

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def update_network(self, network: Mapping[str, Any], allow_internet_access: bool | None = None,
                             request_timeout: float | None = None) -> None: ...

    @overload
    @staticmethod
    async def update_network(sandbox_id: str, network: Mapping[str, Any], allow_internet_access: bool | None = None,
                             request_timeout: float | None = None, *, api_url: str | None = None,
                             api_key: str | None = None, ca_file: str | os.PathLike[str] | None = None) -> None: ...

    @_instance_or_id  # type: ignore[misc]
    async def update_network(self, network: Mapping[str, Any], allow_internet_access: bool | None = None,
                             request_timeout: float | None = None) -> None:
        """Replace the sandbox's egress while it runs: `network` takes create()'s `allow_out`,
        `deny_out`, `dns_servers`, `rules`, `egress_proxy`, `bandwidth_mbps` (and E2B's
        `allow_internet_access`, also an argument). What is left out is cleared: `{}` takes the
        network away."""
        await self._transport.api("PUT", self._path("/network"),
                                  json=_network.update_body(network, allow_internet_access),
                                  request_timeout=request_timeout)

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def get_info(self, request_timeout: float | None = None) -> SandboxInfo: ...

    @overload
    @staticmethod
    async def get_info(sandbox_id: str, request_timeout: float | None = None, *, api_url: str | None = None,
                       api_key: str | None = None, ca_file: str | os.PathLike[str] | None = None) -> SandboxInfo: ...

    @_instance_or_id  # type: ignore[misc]
    async def get_info(self, request_timeout: float | None = None) -> SandboxInfo:
        """What the server knows about the sandbox: template, state, times, metadata, limits."""
        response = await self._transport.api("GET", self._path(), request_timeout=request_timeout)
        return SandboxInfo.from_json(response.json())

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def get_metrics(self, start: datetime | float | None = None, end: datetime | float | None = None,
                          request_timeout: float | None = None) -> builtins.list[SandboxMetrics]: ...

    @overload
    @staticmethod
    async def get_metrics(sandbox_id: str, start: datetime | float | None = None,
                          end: datetime | float | None = None, request_timeout: float | None = None, *,
                          api_url: str | None = None, api_key: str | None = None,
                          ca_file: str | os.PathLike[str] | None = None) -> builtins.list[SandboxMetrics]: ...

    @_instance_or_id  # type: ignore[misc]
    async def get_metrics(self, start: datetime | float | None = None, end: datetime | float | None = None,
                          request_timeout: float | None = None) -> builtins.list[SandboxMetrics]:
        """CPU, memory and disk usage, oldest first: the server samples every 5 s (an hour is
        kept) and adds a reading taken now; `start`/`end` (datetime or unix seconds) narrow it."""
        params = {name: value.timestamp() if isinstance(value, datetime) else value
                  for name, value in (("start", start), ("end", end)) if value is not None}
        response = await self._transport.api("GET", self._path("/metrics"), params=params,
                                             request_timeout=request_timeout)
        return [SandboxMetrics.from_json(d) for d in response.json()]

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def get_logs(self, start: datetime | float | None = None, level: str | None = None,
                       limit: int | None = None, request_timeout: float | None = None) -> builtins.list[SandboxLogEntry]: ...

    @overload
    @staticmethod
    async def get_logs(sandbox_id: str, start: datetime | float | None = None, level: str | None = None,
                       limit: int | None = None, request_timeout: float | None = None, *,
                       api_url: str | None = None, api_key: str | None = None,
                       ca_file: str | os.PathLike[str] | None = None) -> builtins.list[SandboxLogEntry]: ...

    @_instance_or_id  # type: ignore[misc]
    async def get_logs(self, start: datetime | float | None = None, level: str | None = None,
                       limit: int | None = None, request_timeout: float | None = None) -> builtins.list[SandboxLogEntry]:
        """The sandbox's log, oldest first: lifecycle events (created, paused, resumed, killed...)
        and the processes started in it. `start` (datetime or unix seconds) skips older entries,
        `level` ("debug", "info", "warn", "error") less severe ones; at most `limit` (1000) come.
        Readable for a while after the sandbox ended."""
        params: dict[str, str | int] = {}
        if start is not None:
            params["cursor"] = int((start.timestamp() if isinstance(start, datetime) else start) * 1000)
        if level is not None:
            params["level"] = level
        if limit is not None:
            params["limit"] = limit
        response = await self._transport.api("GET", f"/v2{self._path('/logs')}", params=params,
                                             request_timeout=request_timeout)
        return [SandboxLogEntry.from_json(d) for d in response.json()["logs"]]

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def pause(self, request_timeout: float | None = None, *, mode: PauseMode = "full") -> bool: ...

    @overload
    @staticmethod
    async def pause(sandbox_id: str, request_timeout: float | None = None, *, mode: PauseMode = "full",
                    api_url: str | None = None, api_key: str | None = None,
                    ca_file: str | os.PathLike[str] | None = None) -> bool: ...

    @_instance_or_id  # type: ignore[misc]
    async def pause(self, request_timeout: float | None = None, *, mode: PauseMode = "full") -> bool:
        """Pause the sandbox; `resume()` or `connect()` continues it. False if already paused.
        `mode="full"` freezes its processes in memory; `"filesystem"` keeps only its files (its
        processes end; resuming is a cold boot): docs/snapshots.md."""
        if mode not in ("full", "filesystem"):
            raise E.InvalidArgument(f"mode must be 'full' or 'filesystem', got {mode!r}")
        try:
            await self._transport.api("POST", self._path("/pause"), json={"memory": mode == "full"},
                                      request_timeout=request_timeout)
        except E.AlreadyExists:
            return False
        return True

    async def resume(self, timeout: int | None = None, request_timeout: float | None = None) -> None:
        """Continue a paused sandbox (a running one just has its timeout extended)."""
        body = {"timeout": timeout} if timeout is not None else {}
        response = await self._transport.api("POST", f"/v2{self._path('/connect')}", json=body,
                                             request_timeout=request_timeout)
        self._envd.access_token = response.json().get("envdAccessToken") or self._envd.access_token

    async def is_running(self, request_timeout: float | None = None) -> bool:
        """False once the sandbox was killed, expired or paused."""
        return await self._envd.is_running(request_timeout)

    # --- snapshots and fork (client/_snapshots.py; docs/snapshots.md) ---

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def create_snapshot(self, name: str | None = None, warm: bool = False,
                              request_timeout: float | None = None) -> SnapshotInfo: ...

    @overload
    @staticmethod
    async def create_snapshot(sandbox_id: str, name: str | None = None, warm: bool = False,
                              request_timeout: float | None = None, *, api_url: str | None = None,
                              api_key: str | None = None,
                              ca_file: str | os.PathLike[str] | None = None) -> SnapshotInfo: ...

    @_instance_or_id  # type: ignore[misc]
    async def create_snapshot(self, name: str | None = None, warm: bool = False,
                              request_timeout: float | None = None) -> SnapshotInfo:
        """Keep the sandbox's files, env vars and metadata as a snapshot (named or not) to create
        sandboxes from; `warm=True` keeps a pool of them ready. Processes are not kept."""
        return await _snapshots.create_snapshot(self._transport, self.sandbox_id, name, warm, request_timeout)

    @overload  # type: ignore[misc]  # an instance and a static form: see _instance_or_id
    async def fork(self, count: int = 1, timeout: int | None = None,
                   request_timeout: float | None = None) -> builtins.list[AsyncSandbox | SandlotError]: ...

    @overload
    @staticmethod
    async def fork(sandbox_id: str, count: int = 1, timeout: int | None = None, request_timeout: float | None = None,
                   *, api_url: str | None = None,
                   api_key: str | None = None,
                   ca_file: str | os.PathLike[str] | None = None) -> builtins.list[AsyncSandbox | SandlotError]: ...

    @_instance_or_id  # type: ignore[misc]
    async def fork(self, count: int = 1, timeout: int | None = None,
                   request_timeout: float | None = None) -> builtins.list[AsyncSandbox | SandlotError]:
        """`count` new sandboxes with this one's files at this instant (not its processes), each
        with its own id and lifetime (`timeout`, default 15 s as E2B's); a child that failed to
        start is its error in the list."""
        out: builtins.list[AsyncSandbox | SandlotError] = []
        for entry in await _snapshots.fork(self._transport, self.sandbox_id, count, timeout, request_timeout):
            if "sandbox" in entry:
                out.append(type(self)._from_json(entry["sandbox"], Transport(self._transport.config)))
            else:
                out.append(_snapshots.fork_error(entry))
        return out

    @classmethod
    async def list_snapshots(cls, sandbox_id: str | None = None, name: str | None = None, api_url: str | None = None,
                             api_key: str | None = None,
                             request_timeout: float | None = None, *,
                             ca_file: str | os.PathLike[str] | None = None) -> builtins.list[SnapshotInfo]:
        """The team's snapshots, newest first; of one sandbox, or by name."""
        return await _snapshots.list_snapshots(api_url, api_key, sandbox_id, name, request_timeout, ca_file)

    @classmethod
    async def delete_snapshot(cls, snapshot_id: str, api_url: str | None = None, api_key: str | None = None,
                              request_timeout: float | None = None, *,
                              ca_file: str | os.PathLike[str] | None = None) -> bool:
        """Delete a snapshot (sandboxes made from it keep running). False if unknown."""
        return await _snapshots.delete_snapshot(api_url, api_key, snapshot_id, request_timeout, ca_file)

    @classmethod
    async def export_snapshot(cls, snapshot_id: str, api_url: str | None = None, api_key: str | None = None,
                              request_timeout: float | None = None, *,
                              ca_file: str | os.PathLike[str] | None = None) -> SnapshotExport:
        """Copy a snapshot to the server's storage (its SANDLOT_STORAGE: a directory or an S3
        bucket), from which another sandlot host can import it."""
        return await _snapshots.export_snapshot(api_url, api_key, snapshot_id, request_timeout, ca_file)

    @classmethod
    async def import_snapshot(cls, snapshot_id: str, name: str | None = None, api_url: str | None = None,
                              api_key: str | None = None, request_timeout: float | None = None, *,
                              ca_file: str | os.PathLike[str] | None = None) -> SnapshotInfo:
        """Make a snapshot exported to the server's storage (by its `export_id`, `snap...`) one of
        this server's, named `name` (default: its own name)."""
        return await _snapshots.import_snapshot(api_url, api_key, snapshot_id, name, request_timeout, ca_file)

    # --- changing a live sandbox (client/_state.py) ---

    async def set_envs(self, envs: dict[str, str | None]) -> dict[str, str]:
        """Set environment variables for commands started from now on (None unsets one); returns all
        variables set this way. Unlike `create(envs=...)`, they reach login shells only (every
        `commands.run`), not processes already running such as a code context's kernel."""
        return await _state.set_envs(self.files, envs)

    async def reset(self, timeout: int | None = None) -> None:
        """Start over: a fresh sandbox from the same template, with the same metadata, creation envs
        and memory/CPU/disk limits, replaces this one, which is killed. This object then stands for the
        new sandbox (its `sandbox_id` changes). `timeout` defaults to what the old one had left (at
        least 60 s)."""
        info = await self.get_info()
        envs = (await self._envd.http("GET", "/envs")).json()
        fresh = await type(self).create(**_state.reset_arguments(info, envs, timeout, self._transport.config))
        try:
            await self.kill()
        finally:
            # this object now stands for the new sandbox; its own connection pool stays in use
            self._attach(fresh.sandbox_id, fresh._envd.access_token, fresh.template_id)
            await fresh.close()

    # --- sessions: named shells that keep their state (client/_sessions.py) ---

    async def session(self, id: str | None = None, cwd: str | None = None,  # noqa: A002 - Cloudflare's name
                      envs: dict[str, str] | None = None, user: str | None = None) -> AsyncSession:
        """Start a session: a shell that keeps `cd`, `export`, `source`, functions, aliases and
        background jobs from one `exec` to the next. `id` names it (made up if None; AlreadyExists
        if taken), `cwd` is where it starts (default: the workspace if there is one, else the
        user's home), `envs` its environment on top of the sandbox's, `user` who runs it. As a
        context manager it is deleted at the end:

            async with await sandbox.session() as session:
                await session.exec("cd /tmp && export DEBUG=1")
                print((await session.exec("pwd; echo $DEBUG")).stdout)
        """
        return await _sessions.create_session(self._transport, self.sandbox_id, self.files, id, cwd, envs, user)

    create_session = session  # Cloudflare's name

    async def get_session(self, session_id: str) -> AsyncSession:
        """An existing session by id (NotFound if there is none)."""
        return await _sessions.get_session(self._transport, self.sandbox_id, self.files, session_id)

    async def list_sessions(self) -> builtins.list[SessionInfo]:
        """The sandbox's sessions."""
        return await _sessions.list_sessions(self._transport, self.sandbox_id)

    async def delete_session(self, session_id: str) -> bool:
        """End a session (its shell and jobs are killed). False if there was none."""
        return await _sessions.delete_session(self._transport, self.sandbox_id, session_id)

    # --- the workspace: path permissions, commit and discard (client/_workspace.py) ---

    async def get_permissions(self) -> builtins.list[PermissionRule]:
        """The workspace's rules now (NotFound if the sandbox has no workspace)."""
        return await _workspace.get_permissions(self._transport, self.sandbox_id)

    async def set_permissions(self, preset: str | None = None,
                              permissions: _workspace.Rules | None = None) -> builtins.list[PermissionRule]:
        """Replace the workspace's rules while the sandbox runs: `preset` extended by
        `permissions`. Every open, listing and lookup from now on follows them (files already open
        stay open)."""
        return await _workspace.set_permissions(self._transport, self.sandbox_id, preset, permissions)

    async def commit(self) -> AsyncCodebase:
        """Write the sandbox's changes to its workspace back to the codebase (its next version) and
        go on from there. Returns the codebase."""
        return await _workspace.commit(self._transport, self.sandbox_id)

    async def discard(self) -> None:
        """Drop the sandbox's changes to its workspace: it sees the codebase as it was again."""
        await _workspace.discard(self._transport, self.sandbox_id)

    # --- code interpreter: sandboxes of the `code-interpreter` template (others raise NotFound) ---

    async def run_code(self, code: str, language: str | None = None, context: CodeContext | str | None = None,
                       envs: dict[str, str] | None = None, timeout: float | None = None,
                       on_stdout: Callable[[OutputMessage], object] | None = None,
                       on_stderr: Callable[[OutputMessage], object] | None = None,
                       on_result: Callable[[Result], object] | None = None,
                       on_error: Callable[[ExecutionError], object] | None = None,
                       request_timeout: float | None = None) -> Execution:
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
        ExecutionError; they may be coroutine functions. `request_timeout` bounds connecting and
        sending, not the run.
        """
        return await self._code.run_code(code, language=language, context=context, envs=envs, timeout=timeout,
                                         on_stdout=on_stdout, on_stderr=on_stderr, on_result=on_result,
                                         on_error=on_error, request_timeout=request_timeout)

    async def create_code_context(self, language: str = "python", cwd: str | None = None,
                                  variables: dict[str, Any] | None = None, envs: dict[str, str] | None = None,
                                  request_timeout: float | None = None) -> CodeContext:
        """A new context: its own kernel and state, starting in `cwd` (default /home/user).
        `variables` ({name: JSON value}) are defined in its namespace before first use; `envs` are
        its environment variables."""
        return await self._code.create_code_context(language=language, cwd=cwd, variables=variables, envs=envs,
                                                    request_timeout=request_timeout)

    async def list_code_contexts(self, request_timeout: float | None = None) -> builtins.list[CodeContext]:
        """The sandbox's code contexts, oldest first (the default ones included)."""
        return await self._code.list_code_contexts(request_timeout)

    async def restart_code_context(self, context: CodeContext | str, request_timeout: float | None = None) -> None:
        """Restart a context's kernel: its state is cleared, its id stays."""
        await self._code.restart_code_context(context, request_timeout)

    async def remove_code_context(self, context: CodeContext | str, request_timeout: float | None = None) -> None:
        """Stop a context's kernel and forget the context."""
        await self._code.remove_code_context(context, request_timeout)

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
        raw = f"{path}:{operation}:{user or ''}:{token}"  # docs/e2b.md §3.12
        query = {"path": path, **({"username": user} if user else {})}
        if expires_in is not None:
            expiration = int(time.time()) + expires_in
            raw += f":{expiration}"
        digest = base64.b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()
        query["signature"] = "v1_" + digest
        if expires_in is not None:
            query["signature_expiration"] = str(expiration)
        return f"{self.api_url}/files?{urlencode(query, quote_via=quote)}"

    # ---- ports in: preview URLs and waits (the server's ports.py; the proxy is its proxy.py) ----

    def get_host(self, port: int) -> str:
        """E2B's host of `port` in this sandbox, `{port}-{sandbox_id}.{domain}`, which the server's
        port proxy routes to it: `http://` (`https://` on a server with TLS) + host + path. The
        domain is the server's (`serve --domain`, with its port if it carries one); for a server
        without one, `localhost` at the API's port, as the server's own preview URLs: a name
        that reaches it from its own machine only (`*.localhost` resolved by nss-myhostname)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise E.InvalidArgument(f"port must be a number from 1 to 65535, got {port!r}")
        domain = self._domain
        if not domain:
            url = urlsplit(self.api_url)
            domain = f"localhost:{url.port or (443 if url.scheme == 'https' else 80)}"
        return f"{port}-{self.sandbox_id}.{domain}"

    def get_mcp_url(self) -> str:
        """The URL of the sandbox's MCP gateway (`create(mcp=...)`): `/mcp` on port 50005, in the
        scheme of the server (E2B's SDK always says https)."""
        return f"{urlsplit(self.api_url).scheme}://{self.get_host(_mcp.MCP_PORT)}/mcp"

    async def get_mcp_token(self) -> str | None:
        """The token the MCP gateway wants (`Authorization: Bearer <token>`): the one create() made,
        else read from the sandbox (as root); None when it runs no gateway."""
        if self._mcp_token is None:
            self._mcp_token = await _mcp.read_token(self.files)
        return self._mcp_token

    async def expose_port(self, port: int, ttl: int = 3600, request_timeout: float | None = None) -> str:
        """A signed URL to `port` in this sandbox, valid for `ttl` seconds (at most a week) even
        where its traffic is private; exposing the port again replaces the URL (the old one stops
        working)."""
        response = await self._transport.api("POST", self._path(f"/ports/{port}/expose"), json={"ttl": ttl},
                                             request_timeout=request_timeout)
        return ExposedPort.from_json(response.json()).url

    async def unexpose_port(self, port: int, request_timeout: float | None = None) -> None:
        """Revoke the port's preview URL (NotFound if it has none)."""
        await self._transport.api("DELETE", self._path(f"/ports/{port}/expose"), request_timeout=request_timeout)

    async def list_exposed_ports(self, request_timeout: float | None = None) -> builtins.list[ExposedPort]:
        """The ports with a live preview URL."""
        response = await self._transport.api("GET", self._path("/ports"), request_timeout=request_timeout)
        return [ExposedPort.from_json(p) for p in response.json()]

    async def is_port_exposed(self, port: int, request_timeout: float | None = None) -> bool:
        """Whether `port` has a live preview URL."""
        return any(p.port == port for p in await self.list_exposed_ports(request_timeout))

    async def wait_for_port(self, port: int, timeout: float = 30, request_timeout: float | None = None) -> None:
        """Return once something in the sandbox accepts connections on `port`, loopback included
        (the server tries it inside the sandbox; the client does not poll). Raises TimeoutError
        after `timeout` seconds."""
        await wait_for_port(self._envd, port, timeout, request_timeout)

    async def close(self) -> None:
        """Release this object's connections; the sandbox keeps running."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.kill()
        except E.SandboxNotRunning:
            pass
        finally:
            await self.close()


class AsyncSandboxPaginator:
    """Pages of `AsyncSandbox.list()`. Iterate for every sandbox, or call `next_items()` while
    `has_next`."""

    has_next: bool
    """False once the last page was fetched."""
    next_token: str | None
    """Where the next page starts (None before the first and after the last)."""

    def __init__(self, params: dict[str, str | int], api_url: str | None, api_key: str | None,
                 request_timeout: float | None = None, ca_file: str | os.PathLike[str] | None = None):
        """Internal: use `AsyncSandbox.list()`."""
        self._params = params
        self._api_url, self._api_key, self._request_timeout = api_url, api_key, request_timeout
        self._ca_file = ca_file
        self._transport: Transport | None = None
        self.has_next = True
        self.next_token = None

    async def next_items(self) -> list[SandboxInfo]:
        """The next page (empty once there are no more)."""
        if not self.has_next:
            return []
        if self._transport is None:
            self._transport = Transport(await ConnectionConfig.resolve(self._api_url, self._api_key,
                                                                       self._request_timeout, self._ca_file))
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
