"""Snapshots, fork and volumes for the native SDK (server side: server/snapshots.py, transfer.py,
volumes.py; docs/snapshots.md, docs/volumes.md).

Written once, async: AsyncSandbox exposes the snapshot calls (create_snapshot, fork,
list_snapshots, delete_snapshot, export_snapshot, import_snapshot) through the helpers here, and
AsyncVolume is the volume API; their blocking forms are generated (scripts/gen-sync.py).
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

from .. import _exceptions as E
from ._config import ConnectionConfig
from ._http import Transport, error_for_status, sandbox_path

PauseMode = Literal["full", "filesystem"]
"""What a pause keeps: the processes frozen in memory (full), or the files only (filesystem)."""


class VolumeRef(Protocol):
    """A volume as `create(volume_mounts=...)` takes it: an `AsyncVolume` or a `Volume`."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot: create sandboxes from it with `AsyncSandbox.create(snapshot_id)`."""

    snapshot_id: str  # "name:default" for a named snapshot, else its id
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SnapshotInfo:
        return cls(d["snapshotID"], list(d.get("names") or []))


@dataclass(frozen=True)
class SnapshotExport:
    """Where an exported snapshot went (`AsyncSandbox.export_snapshot`)."""

    snapshot_id: str
    export_id: str  # what `import_snapshot` takes, on this host or another one reading the storage
    location: str  # the server's storage: a directory or s3://bucket/prefix
    layers: int  # layers the snapshot has
    uploaded: int  # of which were not in the storage yet


@dataclass(frozen=True)
class VolumeInfo:
    volume_id: str
    name: str


async def create_snapshot(transport: Transport, sandbox_id: str, name: str | None, warm: bool,
                          request_timeout: float | None) -> SnapshotInfo:
    body = {**({"name": name} if name else {}), **({"warm": True} if warm else {})}
    response = await transport.api("POST", sandbox_path(sandbox_id, "/snapshots"), json=body,
                                   request_timeout=request_timeout)
    return SnapshotInfo.from_json(response.json())


async def fork(transport: Transport, sandbox_id: str, count: int, timeout: int | None,
               request_timeout: float | None) -> list[dict[str, Any]]:
    body = {"count": count, **({"timeout": timeout} if timeout is not None else {})}
    response = await transport.api("POST", sandbox_path(sandbox_id, "/fork"), json=body,
                                   request_timeout=request_timeout)
    entries: list[dict[str, Any]] = response.json()
    return entries


def fork_error(entry: dict[str, Any]) -> E.SandlotError:
    """The error of a child that did not start, as the SDK raises that status elsewhere."""
    err = entry.get("error") or {}
    return error_for_status(int(err.get("code", 500)), err.get("message") or "the fork failed")


async def _call(method: str, path: str, api_url: str | None, api_key: str | None, request_timeout: float | None,
                *, ca_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """One control-plane request on a transport of its own: the answer's JSON (None: no body)."""
    transport = Transport(await ConnectionConfig.resolve(api_url, api_key, request_timeout, ca_file))
    try:
        response = await transport.api(method, path, request_timeout=request_timeout, **kwargs)
        return response.json() if response.content else None
    finally:
        await transport.aclose()


async def list_snapshots(api_url: str | None, api_key: str | None, sandbox_id: str | None, name: str | None,
                         request_timeout: float | None, ca_file: str | os.PathLike[str] | None = None
                         ) -> list[SnapshotInfo]:
    transport = Transport(await ConnectionConfig.resolve(api_url, api_key, request_timeout, ca_file))
    found: list[SnapshotInfo] = []
    token: str | None = None
    try:
        while True:
            params = {k: v for k, v in (("sandboxID", sandbox_id), ("name", name), ("nextToken", token)) if v}
            response = await transport.api("GET", "/snapshots", params=params, request_timeout=request_timeout)
            found += [SnapshotInfo.from_json(d) for d in response.json()]
            token = response.headers.get("X-Next-Token")
            if not token:
                return found
    finally:
        await transport.aclose()


async def delete_snapshot(api_url: str | None, api_key: str | None, snapshot_id: str,
                          request_timeout: float | None, ca_file: str | os.PathLike[str] | None = None) -> bool:
    try:
        await _call("DELETE", f"/templates/{quote(snapshot_id, safe='')}", api_url, api_key, request_timeout,
                    ca_file=ca_file)
    except E.NotFound:
        return False
    return True


async def export_snapshot(api_url: str | None, api_key: str | None, snapshot_id: str,
                          request_timeout: float | None, ca_file: str | os.PathLike[str] | None = None
                          ) -> SnapshotExport:
    d = await _call("POST", f"/snapshots/{quote(snapshot_id, safe='')}/export", api_url, api_key, request_timeout,
                    ca_file=ca_file)
    return SnapshotExport(d["snapshotID"], d["exportID"], d["location"], d["layers"], d["uploaded"])


async def import_snapshot(api_url: str | None, api_key: str | None, snapshot_id: str, name: str | None,
                          request_timeout: float | None, ca_file: str | os.PathLike[str] | None = None
                          ) -> SnapshotInfo:
    body = {"snapshotID": snapshot_id, **({"name": name} if name else {})}
    return SnapshotInfo.from_json(await _call("POST", "/snapshots/import", api_url, api_key, request_timeout,
                                              ca_file=ca_file, json=body))


class AsyncVolume:
    """A persistent named volume; mount it with `AsyncSandbox.create(volume_mounts={"/data": volume})`.

        vol = await AsyncVolume.create("datasets", size_mb=2048)   # its size is a hard quota
        [v.name for v in await AsyncVolume.list()]
        await AsyncVolume.destroy("datasets")                      # False if unknown

    Volumes belong to the API key's team; their names are unique within it.
    """

    volume_id: str
    """The volume's id."""
    name: str
    """Its name (what `volume_mounts` takes)."""
    token: str | None
    """The token of its content API (E2B's `Volume` reads and writes files with it)."""

    def __init__(self, volume_id: str, name: str, token: str | None = None):
        """Internal: use `create()`, `get()`."""
        self.volume_id, self.name, self.token = volume_id, name, token

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.volume_id} name={self.name!r}>"

    @classmethod
    async def create(cls, name: str, size_mb: int | None = None, api_url: str | None = None,
                     api_key: str | None = None, request_timeout: float | None = None, *,
                     ca_file: str | os.PathLike[str] | None = None) -> AsyncVolume:
        """Make a volume of `size_mb` (default 1024; its hard quota, counted in the team's disk quota)."""
        body = {"name": name, **({"sizeMB": size_mb} if size_mb is not None else {})}
        d = await _call("POST", "/volumes", api_url, api_key, request_timeout, ca_file=ca_file, json=body)
        return cls(d["volumeID"], d["name"], d.get("token"))

    @classmethod
    async def get(cls, volume: str, api_url: str | None = None, api_key: str | None = None,
                  request_timeout: float | None = None, *,
                  ca_file: str | os.PathLike[str] | None = None) -> AsyncVolume:
        """The volume with this id or name (NotFound if none)."""
        d = await _call("GET", f"/volumes/{quote(volume, safe='')}", api_url, api_key, request_timeout,
                        ca_file=ca_file)
        return cls(d["volumeID"], d["name"], d.get("token"))

    @classmethod
    async def list(cls, api_url: str | None = None, api_key: str | None = None,
                   request_timeout: float | None = None, *,
                   ca_file: str | os.PathLike[str] | None = None) -> builtins.list[VolumeInfo]:
        """The team's volumes, oldest first."""
        return [VolumeInfo(d["volumeID"], d["name"])
                for d in await _call("GET", "/volumes", api_url, api_key, request_timeout, ca_file=ca_file)]

    @classmethod
    async def destroy(cls, volume: str, api_url: str | None = None, api_key: str | None = None,
                      request_timeout: float | None = None, *, ca_file: str | os.PathLike[str] | None = None) -> bool:
        """Delete a volume no sandbox mounts (by id or name). False if unknown."""
        try:
            await _call("DELETE", f"/volumes/{quote(volume, safe='')}", api_url, api_key, request_timeout,
                        ca_file=ca_file)
        except E.NotFound:
            return False
        return True
