"""REST routes for codebases (server/codebase_store.py): named file trees on the host that sandboxes
mount at /workspace with path permissions. API key routes (declared in app.py); a codebase belongs to
the team of the key that created it: another team's is answered as an unknown one (404, the
`codebase_id` check of auth.py) and left out of lists.

    POST   /codebases                     {"name"} -> 201 CODEBASE
    GET    /codebases                     -> [CODEBASE]
    GET    /codebases/{id}                -> CODEBASE
    DELETE /codebases/{id}                -> 204 (409 while running sandboxes mount it)
    PUT    /codebases/{id}/files?path=P   body: the file's bytes -> CODEBASE
    GET    /codebases/{id}/files?path=P   -> the file's bytes
    POST   /codebases/{id}/tar?path=P     body: a tar stream (gzip or not), unpacked below P -> CODEBASE
    GET    /codebases/{id}/tar?path=P     -> P (default /) as a tar stream
    GET    /codebases/{id}/list?path=P    -> [{"path", "type", "size", "mode", "mtime"}] below P

CODEBASE = {"codebaseID", "name", "team", "createdAt", "version", "files", "size"}. Uploads past
the server's upload limit (SANDLOT_MAX_UPLOAD_BYTES) answer 413 and change nothing. Audit rows
(audit.py) carry the codebase's id and the path, never contents.
"""

from __future__ import annotations

import asyncio
import tempfile

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .sandbox_views import rfc3339
from .bodies import JsonBody, read_model
from .auth import caller
from .codebase_store import CodebaseStore
from .envd.uploads import UploadTooLarge
from .request_info import note

SPOOL_IN_MEMORY = 8 << 20  # uploads up to this size are not written to disk before unpacking


class CodebaseIn(JsonBody):
    name: str


def store(request: Request) -> CodebaseStore:
    return request.app.state.codebases


def codebase_json(meta: dict) -> dict:
    return {"codebaseID": meta["id"], "name": meta["name"], "team": meta["team"],
            "createdAt": rfc3339(meta["created_at"]), "version": meta["version"], "files": meta["files"],
            "size": meta["size"]}


def _path(request: Request) -> str:
    path = request.query_params.get("path", "/")
    note(path=path)
    return path


def _id(request: Request) -> str:
    """The codebase the path names (the caller's team's: auth.py checked it)."""
    cid = request.path_params["codebase_id"]
    note(codebase=cid)
    return cid


async def create(request: Request) -> Response:
    body = await read_model(request, CodebaseIn)
    meta = await asyncio.to_thread(store(request).create, body.name, caller(request).team)
    note(codebase=meta["id"])
    return JSONResponse(codebase_json(meta), status_code=201)


async def list_codebases(request: Request) -> Response:
    metas = await asyncio.to_thread(store(request).list, caller(request).team)
    return JSONResponse([codebase_json(m) for m in metas])


async def get(request: Request) -> Response:
    return JSONResponse(codebase_json(store(request).get(_id(request))))


async def delete(request: Request) -> Response:
    await asyncio.to_thread(store(request).delete, _id(request))
    return Response(status_code=204)


async def _spool(request: Request):
    """The request body in a temporary file (the store unpacks it in a worker thread)."""
    limit = request.app.state.config.max_upload_bytes
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=store(request).root)
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(f"the upload is larger than {limit} bytes")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


async def put_file(request: Request) -> Response:
    cid = _id(request)
    store(request).get(cid)
    with await _spool(request) as data:
        meta = await asyncio.to_thread(store(request).write_file, cid, _path(request), data)
    return JSONResponse(codebase_json(meta))


async def get_file(request: Request) -> Response:
    path = await asyncio.to_thread(store(request).read_file, _id(request), _path(request))
    return FileResponse(path, media_type="application/octet-stream")


async def put_tar(request: Request) -> Response:
    cid = _id(request)
    store(request).get(cid)
    with await _spool(request) as data:
        meta = await asyncio.to_thread(store(request).extract_tar, cid, data, _path(request))
    return JSONResponse(codebase_json(meta))


async def get_tar(request: Request) -> Response:
    chunks = store(request).tar(_id(request), _path(request))
    return StreamingResponse(chunks, media_type="application/x-tar")


async def list_files(request: Request) -> Response:
    files = await asyncio.to_thread(store(request).list_files, _id(request), _path(request))
    return JSONResponse(files)


ONE = "/codebases/{codebase_id}"


def routes() -> list[Route]:
    """The routes with JSON or no bodies."""
    return [
        Route("/codebases", create, methods=["POST"]),
        Route("/codebases", list_codebases, methods=["GET"]),
        Route(ONE, get, methods=["GET"]),
        Route(ONE, delete, methods=["DELETE"]),
        Route(ONE + "/files", get_file, methods=["GET"]),
        Route(ONE + "/tar", get_tar, methods=["GET"]),
        Route(ONE + "/list", list_files, methods=["GET"]),
    ]


def upload_routes() -> list[Route]:
    """The uploads: their bodies are streamed and bounded here (_spool), not by the route's guard."""
    return [
        Route(ONE + "/files", put_file, methods=["PUT"]),
        Route(ONE + "/tar", put_tar, methods=["POST"]),
    ]
