"""A sandbox's workspace in the SDK: the create arguments that give it a codebase, permissions and a
security policy; `from_local`; live permission changes; commit and discard."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .. import _exceptions as E
from ..limits import SecurityPolicy
from ..permissions import PRESETS, Rule, RuleError
from ._codebases import AsyncCodebase
from ._http import Transport, sandbox_path

Rules = Iterable[Rule | Mapping[str, Any]]
S = TypeVar("S")  # the sandbox `from_local` starts


def rules_json(permissions: Rules | None) -> list[dict[str, Any]]:
    try:
        return [Rule.from_json(dict(r) if isinstance(r, Mapping) else r).to_json() for r in permissions or ()]
    except RuleError as e:
        raise E.InvalidArgument(str(e)) from None


def create_fields(codebase: AsyncCodebase | str | None, preset: str | None, permissions: Rules | None,
                  workspace_path: str | None, security: SecurityPolicy | Mapping[str, Any] | None) -> dict[str, Any]:
    """The create body's `workspace` and `security` (empty without them)."""
    body: dict[str, Any] = {}
    if codebase is not None or preset is not None or permissions is not None or workspace_path is not None:
        if preset is not None and preset not in PRESETS:
            raise E.InvalidArgument(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
        body["workspace"] = {"codebase": codebase.id if isinstance(codebase, AsyncCodebase) else codebase,
                             "path": workspace_path, "preset": preset, "permissions": rules_json(permissions)}
    if security is not None:
        if isinstance(security, Mapping):
            try:
                security = SecurityPolicy(**security)
            except TypeError as e:
                raise E.InvalidArgument(f"unknown security setting: {e}") from None
        fields = dataclasses.asdict(security.validate())
        body["security"] = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    return body


async def from_local(create: Callable[..., Awaitable[S]], path: str | os.PathLike[str], exclude: Iterable[str],
                     api_url: str | None, api_key: str | None, request_timeout: float | None,
                     ca_file: str | os.PathLike[str] | None, **create_kwargs: Any) -> tuple[S, AsyncCodebase]:
    """Upload `path` as a new codebase, start a sandbox on it with `create` (AsyncSandbox.create);
    the sandbox, and the codebase, which is the sandbox's own (`drop_codebase` once it is killed)."""
    local = Path(path)
    if not local.is_dir():
        raise E.InvalidArgument(f"{local} is not a directory")
    codebase = await AsyncCodebase.create(local.resolve().name or "codebase", api_url=api_url, api_key=api_key,
                                          ca_file=ca_file)
    try:
        await codebase.upload_dir(local, exclude=exclude)
        sandbox = await create(codebase=codebase, api_url=api_url, api_key=api_key, ca_file=ca_file,
                               request_timeout=request_timeout, **create_kwargs)
    except BaseException:
        await codebase.delete()
        await codebase.close()
        raise
    return sandbox, codebase


async def drop_codebase(codebase: AsyncCodebase) -> None:
    """After its sandbox is gone: delete the codebase `from_local` made for it."""
    try:
        await codebase.delete()
    finally:
        await codebase.close()


async def get_permissions(transport: Transport, sandbox_id: str) -> list[Rule]:
    response = await transport.api("GET", sandbox_path(sandbox_id, "/permissions"))
    return [Rule.from_json(r) for r in response.json()["permissions"]]


async def set_permissions(transport: Transport, sandbox_id: str, preset: str | None,
                          permissions: Rules | None) -> list[Rule]:
    body = {"preset": preset, "permissions": rules_json(permissions)}
    response = await transport.api("PUT", sandbox_path(sandbox_id, "/permissions"), json=body)
    return [Rule.from_json(r) for r in response.json()["permissions"]]


async def commit(transport: Transport, sandbox_id: str) -> AsyncCodebase:
    response = await transport.api("POST", sandbox_path(sandbox_id, "/workspace/commit"), timeout=600)
    return AsyncCodebase(transport, response.json())


async def discard(transport: Transport, sandbox_id: str) -> None:
    await transport.api("POST", sandbox_path(sandbox_id, "/workspace/discard"))
