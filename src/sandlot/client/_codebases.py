"""Codebases: named file trees on the server that sandboxes mount at /workspace, each sandbox with
its own path permissions and its own copy-on-write changes (`AsyncCodebase`)."""

from __future__ import annotations

import asyncio
import builtins
import io
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from .. import _exceptions as E
from ._config import ConnectionConfig
from ._http import Transport

UPLOAD_TIMEOUT = 600.0


@dataclass(frozen=True)
class CodebaseFile:
    """An entry of `codebase.list_files()`."""

    path: str
    type: str  # "file", "dir" or "symlink"
    size: int
    mode: int
    mtime: float


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class AsyncCodebase:
    """A file tree stored once on the server, which many sandboxes can mount at the same time, each
    with its own permissions and its own changes (which reach the codebase only through
    `sandbox.commit()`).

        codebase = await AsyncCodebase.create("shared-repo")
        await codebase.upload_dir("./my-project")
        sandbox = await AsyncSandbox.create(codebase=codebase, preset="agent-safe")

    Files changed by uploads or commits make a new version; sandboxes already running keep theirs.
    """

    id: str
    """The codebase's id (`cb` and 16 hex digits), what `Sandbox.create(codebase=...)` takes."""
    name: str
    """The name it was given (free text, not unique)."""
    team: str
    """The team whose keys see it."""
    created_at: datetime
    version: int
    """Its current version: each upload and commit makes the next one."""
    files: int
    """Files in the current version."""
    size: int
    """Bytes of those files."""

    def __init__(self, transport: Transport, data: dict[str, Any]):
        """Internal: use `create()`, `get()`, `list()`."""
        self._transport = transport
        self._update(data)

    def _update(self, data: dict[str, Any]) -> None:
        self.id = data["codebaseID"]
        self.name = data["name"]
        self.team = data["team"]
        self.created_at = _time(data["createdAt"])
        self.version = data["version"]
        self.files = data["files"]
        self.size = data["size"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} v{self.version} files={self.files}>"

    def _path(self, suffix: str = "") -> str:
        return f"/codebases/{quote(self.id, safe='')}{suffix}"

    @classmethod
    async def create(cls, name: str, api_url: str | None = None, api_key: str | None = None, *,
                     ca_file: str | os.PathLike[str] | None = None) -> AsyncCodebase:
        """A new, empty codebase."""
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key, ca_file=ca_file))
        return cls(transport, (await transport.api("POST", "/codebases", json={"name": name})).json())

    @classmethod
    async def get(cls, codebase_id: str, api_url: str | None = None, api_key: str | None = None, *,
                  ca_file: str | os.PathLike[str] | None = None) -> AsyncCodebase:
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key, ca_file=ca_file))
        path = f"/codebases/{quote(codebase_id, safe='')}"
        return cls(transport, (await transport.api("GET", path)).json())

    @classmethod
    async def list(cls, api_url: str | None = None, api_key: str | None = None, *,
                   ca_file: str | os.PathLike[str] | None = None) -> builtins.list[AsyncCodebase]:
        """Your team's codebases, oldest first."""
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key, ca_file=ca_file))
        return [cls(transport, d) for d in (await transport.api("GET", "/codebases")).json()]

    async def refresh(self) -> AsyncCodebase:
        self._update((await self._transport.api("GET", self._path())).json())
        return self

    async def upload_file(self, path: str, data: str | bytes | BinaryIO) -> AsyncCodebase:
        """Write one file (`path` inside the codebase; parents are made)."""
        body = data.encode() if isinstance(data, str) else _body(data)
        response = await self._transport.api("PUT", self._path("/files"), params={"path": path}, content=body,
                                             timeout=UPLOAD_TIMEOUT)
        self._update(response.json())
        return self

    async def upload_dir(self, local: str | os.PathLike[str], into: str = "/", exclude: Iterable[str] = ()) -> AsyncCodebase:
        """Upload a local directory's contents below `into`, as one tar stream. `exclude`: names
        (at any depth) to leave out, e.g. (".git", "node_modules")."""
        local = Path(local)
        if not local.is_dir():
            raise E.InvalidArgument(f"{local} is not a directory")
        with tempfile.TemporaryFile() as tar_file:
            await asyncio.to_thread(_write_tar, local, tar_file, frozenset(exclude))
            tar_file.seek(0)
            return await self.upload_tar(tar_file, into)

    async def upload_tar(self, data: bytes | BinaryIO, into: str = "/") -> AsyncCodebase:
        """Unpack a tar archive (gzip allowed) below `into`."""
        response = await self._transport.api("POST", self._path("/tar"), params={"path": into}, content=_body(data),
                                             timeout=UPLOAD_TIMEOUT)
        self._update(response.json())
        return self

    async def read_file(self, path: str) -> bytes:
        response = await self._transport.api("GET", self._path("/files"), params={"path": path},
                                             not_found=E.FileNotFound)
        return response.content

    async def list_files(self, path: str = "/") -> builtins.list[CodebaseFile]:
        """Every entry below `path`, sorted by path."""
        response = await self._transport.api("GET", self._path("/list"), params={"path": path},
                                             not_found=E.FileNotFound)
        return [CodebaseFile(**d) for d in response.json()]

    async def download_tar(self, path: str = "/") -> bytes:
        """The tree below `path` as a tar archive."""
        response = await self._transport.api("GET", self._path("/tar"), params={"path": path},
                                             not_found=E.FileNotFound, timeout=UPLOAD_TIMEOUT)
        return response.content

    async def download(self, local: str | os.PathLike[str], path: str = "/") -> Path:
        """Unpack the tree below `path` into the local directory `local` (made if missing)."""
        data = await self.download_tar(path)
        target = Path(local)

        def unpack() -> None:
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                tar.extractall(target, filter="data")

        await asyncio.to_thread(unpack)
        return target

    async def delete(self) -> bool:
        """Delete the codebase (AlreadyExists while running sandboxes mount it). False if it was
        already gone."""
        try:
            await self._transport.api("DELETE", self._path())
        except E.NotFound:
            return False
        return True

    async def close(self) -> None:
        """Release this object's connections; the codebase stays."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncCodebase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.delete()
        finally:
            await self.close()


def _body(data: bytes | BinaryIO) -> bytes | AsyncIterator[bytes]:
    """Bytes as they are; a file as chunks read off the event loop."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(data.read, 1 << 20):
            yield chunk

    return chunks()


def _write_tar(local: Path, out: BinaryIO, exclude: frozenset[str]) -> None:
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        for dirpath, dirs, files in os.walk(local):
            dirs[:] = sorted(d for d in dirs if d not in exclude)
            for name in sorted(dirs) + sorted(f for f in files if f not in exclude):
                full = os.path.join(dirpath, name)
                tar.add(full, arcname=os.path.relpath(full, local), recursive=False)
