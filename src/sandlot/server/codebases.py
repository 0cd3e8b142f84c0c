"""REST routes for codebases (server/codebase_store.py): named file trees on the host that sandboxes
mount at /workspace with path permissions. Authenticated with the API key like /sandboxes.

    POST   /codebases                     {"name"} -> 201 CODEBASE
    GET    /codebases                     -> [CODEBASE]
    GET    /codebases/{id}                -> CODEBASE
    DELETE /codebases/{id}                -> 204 (409 while running sandboxes mount it)
    PUT    /codebases/{id}/files?path=P   body: the file's bytes -> CODEBASE
    GET    /codebases/{id}/files?path=P   -> the file's bytes
    POST   /codebases/{id}/tar?path=P     body: a tar stream (gzip or not), unpacked below P -> CODEBASE
    GET    /codebases/{id}/tar?path=P     -> P (default /) as a tar stream
    GET    /codebases/{id}/list?path=P    -> [{"path", "type", "size", "mode", "mtime"}] below P

CODEBASE = {"codebaseID", "name", "owner", "createdAt", "version", "files", "size"}. Uploads past
the server's upload limit (SANDLOT_MAX_UPLOAD_BYTES) answer 413 and change nothing.
"""

from __future__ import annotations

import asyncio
import tempfile

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .api import _Body, _body, rfc3339
from .codebase_store import CodebaseStore
from .envd.files_http import UploadTooLarge

SPOOL_IN_MEMORY = 8 << 20  # uploads up to this size are not written to disk before unpacking


class CodebaseIn(_Body):
    name: str


def store(request: Request) -> CodebaseStore:
    state = request.app.state
    if getattr(state, "codebases", None) is None:
        state.codebases = CodebaseStore(state.config.home / "codebases", state.config.max_upload_bytes)
    return state.codebases


def codebase_json(meta: dict) -> dict:
    return {"codebaseID": meta["id"], "name": meta["name"], "owner": meta["owner"],
            "createdAt": rfc3339(meta["created_at"]), "version": meta["version"], "files": meta["files"],
            "size": meta["size"]}


def _path(request: Request) -> str:
    return request.query_params.get("path", "/")


async def create(request: Request) -> Response:
    body = await _body(request, CodebaseIn)
    meta = await asyncio.to_thread(store(request).create, body.name)
    return JSONResponse(codebase_json(meta), status_code=201)


async def list_codebases(request: Request) -> Response:
    return JSONResponse([codebase_json(m) for m in await asyncio.to_thread(store(request).list)])


async def get(request: Request) -> Response:
    return JSONResponse(codebase_json(store(request).get(request.path_params["codebase_id"])))


async def delete(request: Request) -> Response:
    await asyncio.to_thread(store(request).delete, request.path_params["codebase_id"])
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
    cid = request.path_params["codebase_id"]
    store(request).get(cid)
    with await _spool(request) as data:
        meta = await asyncio.to_thread(store(request).write_file, cid, _path(request), data)
    return JSONResponse(codebase_json(meta))


async def get_file(request: Request) -> Response:
    path = await asyncio.to_thread(store(request).read_file, request.path_params["codebase_id"], _path(request))
    return FileResponse(path, media_type="application/octet-stream")


async def put_tar(request: Request) -> Response:
    cid = request.path_params["codebase_id"]
    store(request).get(cid)
    with await _spool(request) as data:
        meta = await asyncio.to_thread(store(request).extract_tar, cid, data, _path(request))
    return JSONResponse(codebase_json(meta))


async def get_tar(request: Request) -> Response:
    chunks = store(request).tar(request.path_params["codebase_id"], _path(request))
    return StreamingResponse(chunks, media_type="application/x-tar")


async def list_files(request: Request) -> Response:
    files = await asyncio.to_thread(store(request).list_files, request.path_params["codebase_id"], _path(request))
    return JSONResponse(files)


def routes() -> list[Route]:
    one = "/codebases/{codebase_id}"
    return [
        Route("/codebases", create, methods=["POST"]),
        Route("/codebases", list_codebases, methods=["GET"]),
        Route(one, get, methods=["GET"]),
        Route(one, delete, methods=["DELETE"]),
        Route(one + "/files", put_file, methods=["PUT"]),
        Route(one + "/files", get_file, methods=["GET"]),
        Route(one + "/tar", put_tar, methods=["POST"]),
        Route(one + "/tar", get_tar, methods=["GET"]),
        Route(one + "/list", list_files, methods=["GET"]),
    ]
