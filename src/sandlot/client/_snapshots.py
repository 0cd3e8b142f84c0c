"""Snapshots, fork and volumes for the native SDK (server side: server/snapshots.py, volumes.py).

Written once, async; AsyncSandbox exposes them (create_snapshot, fork, list_snapshots,
delete_snapshot) and AsyncVolume is the volume API; the blocking forms come from _sync.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from .. import _exceptions as E
from ._config import ConnectionConfig
from ._http import Transport


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot: create sandboxes from it with `AsyncSandbox.create(snapshot_id)`."""

    snapshot_id: str  # "name:default" for a named snapshot, else its id
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict) -> SnapshotInfo:
        return cls(d["snapshotID"], list(d.get("names") or []))


async def create_snapshot(transport: Transport, sandbox_id: str, name: str | None, warm: bool) -> SnapshotInfo:
    body = {**({"name": name} if name else {}), **({"warm": True} if warm else {})}
    response = await transport.api("POST", f"/sandboxes/{quote(sandbox_id, safe='')}/snapshots", json=body)
    return SnapshotInfo.from_json(response.json())


async def fork(transport: Transport, sandbox_id: str, count: int, timeout: int | None) -> list[dict]:
    body = {"count": count, **({"timeout": timeout} if timeout is not None else {})}
    response = await transport.api("POST", f"/sandboxes/{quote(sandbox_id, safe='')}/fork", json=body)
    return response.json()


def fork_error(entry: dict) -> E.SandlotError:
    err = entry.get("error") or {}
    status = err.get("code", 500)
    kind = next((c for c in (E.InvalidArgument, E.NotFound, E.ResourceExhausted, E.Unsupported)
                 if c.status == status), E.RuntimeFailure)
    return kind(err.get("message") or "the fork failed")


async def list_snapshots(api_url: str | None, api_key: str | None, sandbox_id: str | None,
                         name: str | None) -> list[SnapshotInfo]:
    transport = Transport(await ConnectionConfig.resolve(api_url, api_key))
    found, token = [], None
    try:
        while True:
            params = {k: v for k, v in (("sandboxID", sandbox_id), ("name", name), ("nextToken", token)) if v}
            response = await transport.api("GET", "/snapshots", params=params)
            found += [SnapshotInfo.from_json(d) for d in response.json()]
            token = response.headers.get("X-Next-Token")
            if not token:
                return found
    finally:
        await transport.aclose()


async def delete_snapshot(api_url: str | None, api_key: str | None, snapshot_id: str) -> bool:
    transport = Transport(await ConnectionConfig.resolve(api_url, api_key))
    try:
        await transport.api("DELETE", f"/templates/{quote(snapshot_id, safe='')}")
        return True
    except E.NotFound:
        return False
    finally:
        await transport.aclose()


@dataclass(frozen=True)
class VolumeInfo:
    volume_id: str
    name: str


class AsyncVolume:
    """A persistent named volume; mount it with `AsyncSandbox.create(volume_mounts={"/data": name})`.

        vol = await AsyncVolume.create("datasets", size_mb=2048)   # its size is a hard quota
        [v.name for v in await AsyncVolume.list()]
        await AsyncVolume.destroy("datasets")                      # False if unknown
    """

    def __init__(self, volume_id: str, name: str, token: str | None = None):
        self.volume_id, self.name, self.token = volume_id, name, token

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.volume_id} name={self.name!r}>"

    @classmethod
    async def _call(cls, method: str, path: str, api_url: str | None, api_key: str | None, **kw):
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key))
        try:
            return (await transport.api(method, path, **kw)).json() if method != "DELETE" else \
                await transport.api(method, path, **kw)
        finally:
            await transport.aclose()

    @classmethod
    async def create(cls, name: str, size_mb: int | None = None, api_url: str | None = None,
                     api_key: str | None = None) -> AsyncVolume:
        body = {"name": name, **({"sizeMB": size_mb} if size_mb is not None else {})}
        d = await cls._call("POST", "/volumes", api_url, api_key, json=body)
        return cls(d["volumeID"], d["name"], d.get("token"))

    @classmethod
    async def get(cls, volume: str, api_url: str | None = None, api_key: str | None = None) -> AsyncVolume:
        d = await cls._call("GET", f"/volumes/{quote(volume, safe='')}", api_url, api_key)
        return cls(d["volumeID"], d["name"], d.get("token"))

    @classmethod
    async def list(cls, api_url: str | None = None, api_key: str | None = None) -> list[VolumeInfo]:
        return [VolumeInfo(d["volumeID"], d["name"]) for d in await cls._call("GET", "/volumes", api_url, api_key)]

    @classmethod
    async def destroy(cls, volume: str, api_url: str | None = None, api_key: str | None = None) -> bool:
        try:
            await cls._call("DELETE", f"/volumes/{quote(volume, safe='')}", api_url, api_key)
            return True
        except E.NotFound:
            return False
