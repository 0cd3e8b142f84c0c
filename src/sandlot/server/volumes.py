"""E2B's volumes: the control-plane routes (API key) and the volume content API (the volume's own
token, `Authorization: Bearer`; the SDK's `Volume` reaches it at E2B_VOLUME_API_URL, which may be
this server's URL).

    POST   /volumes {"name", "sizeMB"?}  -> 201 {"volumeID", "name", "token"}   (sizeMB: sandlot's)
    GET    /volumes                      -> [{"volumeID", "name"}]
    GET    /volumes/{id or name}         -> {"volumeID", "name", "token"}
    DELETE /volumes/{id or name}         -> 204 | 404 | 409 (mounted in a sandbox)
    /volumecontent/{id}/path (GET stat, PATCH owner/mode, DELETE), /dir (GET list, POST make),
    /file (GET read, PUT write)

Sandboxes mount volumes at create (`volumeMounts: [{"name", "path"}]`).

Teams: a volume belongs to the team of the key that made it. The control-plane routes see the
caller's team's volumes only (an id of another team's is 404 through `VolumeStore.team_of`, which
app.py registers for `{volume_id}`; names are looked up within the team), a create mounts the
creating team's volumes only, and a volume's size counts toward its team's max_disk_mb
(quotas.py). The content API takes the volume's token instead (volume_gate.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import posixpath
from typing import BinaryIO

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.middleware import Middleware
from starlette.routing import Route

from .. import _exceptions as E
from ..protocol import contract
from ..volumes import Volume, VolumeStore
from ..volumes.store import DEFAULT_SIZE_MB
from ..volumes.files import DEFAULT_GID, DEFAULT_UID, VolumeFiles
from .auth import caller
from .bodies import read_json_object
from .request_info import note
from .volume_gate import VolumeGate, gated_volume

READ_CHUNK = 1024 * 1024
# Where a volume may not go: what the runtime itself mounts, or the root
_RESERVED = ("/proc", "/dev", "/sys", contract.RUN_DIR, contract.CODE_ROOT)


def volume_binds(store: VolumeStore, mounts: list[dict], team: str) -> tuple[tuple[str, str], ...]:
    """(host mount, sandbox path) for a create's volumeMounts (volumes of `team`, by name), each
    volume mounted on the host."""
    binds, seen = [], set()
    for m in mounts:
        name, path = m.get("name"), m.get("path")
        if not isinstance(name, str) or not isinstance(path, str):
            raise E.InvalidArgument("each volume mount needs a name and a path")
        norm = posixpath.normpath(path)
        if not path.startswith("/") or norm == "/" or norm != path.rstrip("/") or \
                any(norm == r or norm.startswith(r.rstrip("/") + "/") for r in _RESERVED):
            raise E.InvalidArgument(f"a volume cannot be mounted at {path!r}")
        if norm in seen:
            raise E.InvalidArgument(f"two volumes at {norm}")
        seen.add(norm)
        binds.append((str(store.mounted(store.get(name, team))), norm))
    return tuple(binds)


def _store(request: Request) -> VolumeStore:
    return request.app.state.volumes


def _volume_json(vol: Volume, token: bool) -> dict:
    return {"volumeID": vol.id, "name": vol.name, **({"token": vol.token} if token else {})}


async def create_volume(request: Request) -> Response:
    data = await read_json_object(request)
    size = data.get("sizeMB", None)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise E.InvalidArgument("sizeMB must be an integer")
    store, team = _store(request), caller(request).team
    note(name=data.get("name"), size_mb=size)
    with request.app.state.service.quotas.admit_volume(team, size or DEFAULT_SIZE_MB):
        vol = await asyncio.to_thread(store.create, data.get("name"), team, *([size] if size else []))
    note(volume=vol.id)
    return JSONResponse(_volume_json(vol, True), status_code=201)


async def list_volumes(request: Request) -> Response:
    return JSONResponse([_volume_json(v, False) for v in _store(request).list(caller(request).team)])


async def get_volume(request: Request) -> Response:
    return JSONResponse(_volume_json(_store(request).get(request.path_params["volume_id"], caller(request).team),
                                     True))


def users_of(request: Request, vol: Volume) -> list[str]:
    svc = request.app.state.service
    return [r.id for r in svc.listed()
            if r.team == vol.team and any(m.get("name") == vol.name for m in r.volume_mounts)]


async def delete_volume(request: Request) -> Response:
    store = _store(request)
    vol = store.find(request.path_params["volume_id"], caller(request).team)
    note(volume=request.path_params["volume_id"])
    if vol is None:
        raise E.NotFound(f"volume \"{request.path_params['volume_id']}\" not found")
    if users := users_of(request, vol):
        raise E.AlreadyExists(f"volume \"{vol.name}\" is mounted in sandbox {users[0]}")
    await asyncio.to_thread(store.delete, vol)
    return Response(status_code=204)


# ---- content API -----------------------------------------------------------------------------

def _int(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise E.InvalidArgument(f"{name} must be an integer") from None


def _path(request: Request) -> str:
    path = request.query_params.get("path")
    if path is None:
        raise E.InvalidArgument("path is required")
    return path


async def _files(request: Request) -> VolumeFiles:
    note(path=request.query_params.get("path"))
    return VolumeFiles(await asyncio.to_thread(_store(request).mounted, gated_volume(request)))


async def content_path(request: Request) -> Response:
    files = await _files(request)
    path = _path(request)
    if request.method == "GET":
        return JSONResponse(await asyncio.to_thread(files.stat, path))
    if request.method == "DELETE":
        await asyncio.to_thread(files.remove, path)
        return Response(status_code=204)
    body = await read_json_object(request)  # PATCH
    if any(body.get(k) is not None and not isinstance(body[k], int)
                                         for k in ("uid", "gid", "mode")):
        raise E.InvalidArgument("uid, gid and mode are integers")
    return JSONResponse(await asyncio.to_thread(files.update, path, body.get("uid"), body.get("gid"),
                                                body.get("mode")))


async def content_dir(request: Request) -> Response:
    files = await _files(request)
    path = _path(request)
    if request.method == "GET":
        return JSONResponse(await asyncio.to_thread(files.list, path, _int(request, "depth", 1)))
    entry = await asyncio.to_thread(files.make_dir, path, _int(request, "uid", DEFAULT_UID),
                                    _int(request, "gid", DEFAULT_GID), _int(request, "mode", 0o755),
                                    request.query_params.get("force") == "true")
    return JSONResponse(entry, status_code=201)


async def content_file(request: Request) -> Response:
    files = await _files(request)
    path = _path(request)
    if request.method == "GET":
        f = await asyncio.to_thread(files.open, path)
        return StreamingResponse(_file_chunks(f), media_type="application/octet-stream")
    uid, gid, mode = _int(request, "uid", DEFAULT_UID), _int(request, "gid", DEFAULT_GID), _int(request, "mode", 0o644)
    entry = await asyncio.to_thread(files.write, path, _chunks(request, asyncio.get_running_loop()), uid, gid, mode,
                                    request.query_params.get("force") == "true")
    return JSONResponse(entry, status_code=201)


async def _file_chunks(f: BinaryIO) -> AsyncIterator[bytes]:
    """A volume's file, read chunk by chunk as the client takes them: never held whole."""
    try:
        while chunk := await asyncio.to_thread(f.read, READ_CHUNK):
            yield chunk
    finally:
        f.close()


def _chunks(request: Request, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The request's body, read from the event loop chunk by chunk by the thread that writes it
    (its route bounds it: SANDLOT_MAX_UPLOAD_BYTES)."""
    stream = request.stream().__aiter__()
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(stream.__anext__(), loop).result()
        except StopAsyncIteration:
            return


def routes() -> list[Route]:
    """The control-plane routes (API key)."""
    vid = "/volumes/{volume_id}"
    return [
        Route("/volumes", create_volume, methods=["POST"]),
        Route("/volumes", list_volumes, methods=["GET"]),
        Route(vid, get_volume, methods=["GET"]),
        Route(vid, delete_volume, methods=["DELETE"]),
    ]


def content_routes() -> list[Route]:
    """The content API (the volume's token, checked by VolumeGate)."""
    content = "/volumecontent/{volume_id}"
    gate = [Middleware(VolumeGate)]
    return [
        Route(content + "/path", content_path, methods=["GET", "PATCH", "DELETE"], middleware=gate),
        Route(content + "/dir", content_dir, methods=["GET", "POST"], middleware=gate),
        Route(content + "/file", content_file, methods=["GET", "PUT"], middleware=gate),
    ]
