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
"""

from __future__ import annotations

import asyncio
import hmac
import json
import posixpath

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..protocol import contract
from ..volumes import Volume, VolumeStore
from ..volumes.files import DEFAULT_GID, DEFAULT_UID, VolumeFiles

# Where a volume may not go: what the runtime itself mounts, or the root
_RESERVED = ("/proc", "/dev", "/sys", contract.RUN_DIR, contract.CODE_ROOT)
MAX_UPLOAD = 1 << 30


def volume_binds(store: VolumeStore, mounts: list[dict]) -> tuple[tuple[str, str], ...]:
    """(host mount, sandbox path) for a create's volumeMounts, each volume mounted on the host."""
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
        binds.append((str(store.mounted(store.get(name))), norm))
    return tuple(binds)


def _store(request: Request) -> VolumeStore:
    return request.app.state.volumes


def _volume_json(vol: Volume, token: bool) -> dict:
    return {"volumeID": vol.id, "name": vol.name, **({"token": vol.token} if token else {})}


async def create_volume(request: Request) -> Response:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise E.InvalidArgument("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise E.InvalidArgument("request body must be a JSON object")
    size = data.get("sizeMB", None)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise E.InvalidArgument("sizeMB must be an integer")
    store = _store(request)
    vol = await asyncio.to_thread(store.create, data.get("name"), *([size] if size else []))
    return JSONResponse(_volume_json(vol, True), status_code=201)


async def list_volumes(request: Request) -> Response:
    return JSONResponse([_volume_json(v, False) for v in _store(request).list()])


async def get_volume(request: Request) -> Response:
    return JSONResponse(_volume_json(_store(request).get(request.path_params["volume_id"]), True))


def users_of(request: Request, vol: Volume) -> list[str]:
    svc = request.app.state.service
    return [r.id for r in svc.listed() if any(m.get("name") == vol.name for m in r.volume_mounts)]


async def delete_volume(request: Request) -> Response:
    store = _store(request)
    vol = store.find(request.path_params["volume_id"])
    if vol is None:
        raise E.NotFound(f"volume \"{request.path_params['volume_id']}\" not found")
    if users := users_of(request, vol):
        raise E.AlreadyExists(f"volume \"{vol.name}\" is mounted in sandbox {users[0]}")
    await asyncio.to_thread(store.delete, vol)
    return Response(status_code=204)


# ---- content API -----------------------------------------------------------------------------

def _content_volume(request: Request) -> tuple[VolumeStore, Volume]:
    store = _store(request)
    vol = store.find(request.path_params["volume_id"])
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if vol is None or not token or not hmac.compare_digest(token, vol.token):
        raise E.AuthenticationError("invalid volume token")  # the same answer for unknown volumes
    return store, vol


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
    store, vol = _content_volume(request)
    return VolumeFiles(await asyncio.to_thread(store.mounted, vol))


async def content_path(request: Request) -> Response:
    files = await _files(request)
    path = _path(request)
    if request.method == "GET":
        return JSONResponse(await asyncio.to_thread(files.stat, path))
    if request.method == "DELETE":
        await asyncio.to_thread(files.remove, path)
        return Response(status_code=204)
    try:  # PATCH
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise E.InvalidArgument("request body is not valid JSON") from None
    if not isinstance(body, dict) or any(body.get(k) is not None and not isinstance(body[k], int)
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
        data = await asyncio.to_thread(files.read, path)
        return Response(data, media_type="application/octet-stream")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD:
            raise E.ResourceExhausted("upload too large")
    entry = await asyncio.to_thread(files.write, path, bytes(body), _int(request, "uid", DEFAULT_UID),
                                    _int(request, "gid", DEFAULT_GID), _int(request, "mode", 0o644),
                                    request.query_params.get("force") == "true")
    return JSONResponse(entry, status_code=201)


def routes() -> list[Route]:
    vid = "/volumes/{volume_id}"
    content = "/volumecontent/{volume_id}"
    return [
        Route("/volumes", create_volume, methods=["POST"]),
        Route("/volumes", list_volumes, methods=["GET"]),
        Route(vid, get_volume, methods=["GET"]),
        Route(vid, delete_volume, methods=["DELETE"]),
        Route(content + "/path", content_path, methods=["GET", "PATCH", "DELETE"]),
        Route(content + "/dir", content_dir, methods=["GET", "POST"]),
        Route(content + "/file", content_file, methods=["GET", "PUT"]),
    ]
