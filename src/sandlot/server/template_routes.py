"""E2B's template build API, as the official SDK's `Template.build()` calls it (docs/e2b.md §2.13):

    POST   /v3/templates  {"name": "n[:tag]", "tags"?, "cpuCount"?, "memoryMB"?}
                            -> 202 {"templateID", "buildID", "names", "tags", "aliases", "public"}
    GET    /templates/{id}/files/{hash}     -> 201 {"present", "url"?}: where to PUT the files' tarball
    PUT    /templates/{id}/files/{hash}/upload?expires=&signature=   (that URL: signed, no API key)
    POST   /v2/templates/{id}/builds/{buildID}  TemplateBuildStartV2 -> 202; the build runs
    GET    /templates/{id}/builds/{buildID}/status?logsOffset=&limit= -> {"status", "logEntries",
                                                                        "logs", "reason"?}
    GET    /templates/aliases/{name}         -> 200 {"templateID", "public"} | 404
    GET    /templates                        -> the team's templates (sandlot's CLI; E2B's list)
    DELETE /templates/{id or name}           -> 204: a template, else a snapshot (E2B's delete_snapshot)
    POST   /templates/tags {"target": "n:tag", "tags"}; DELETE /templates/tags {"name", "tags"};
    GET    /templates/{id}/tags

Every route but the upload takes an API key and serves the caller's team only (`{template_id}` is
team-checked by auth.py through `team_of`, names resolve within the team). The upload URL stands in
for E2B's presigned S3 URL: signed (upload_gate.py), the PUT streamed to disk, bounded by
SANDLOT_MAX_UPLOAD_BYTES, and with the team's other uploads by SANDLOT_TEMPLATE_FILES_MAX_BYTES and
its max_disk_mb (template_files.py, which also removes them).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..templates import build_spec
from .auth import caller
from .bodies import read_json_object
from .custom_templates import DEFAULT_TAG, CustomTemplates, check_name, split_ref
from .request_info import note
from .snapshots import delete_snapshot
from .template_builder import TemplateBuilder
from .template_files import TemplateFiles
from .upload_gate import UploadGate, sign

UPLOAD_TTL_S = 3600
PAGE = 100  # log entries per status answer, as E2B's


def _store(request: Request) -> CustomTemplates:
    return request.app.state.custom_templates


def _builder(request: Request) -> TemplateBuilder:
    return request.app.state.template_builder


def _files(request: Request) -> TemplateFiles:
    return request.app.state.template_files


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z") if t else None


def _strings(data: dict, key: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise E.InvalidArgument(f"{key} must be a list of strings")
    return value


async def request_build(request: Request) -> Response:
    data = await read_json_object(request)
    ref = data.get("name") or data.get("alias")
    if not isinstance(ref, str) or not ref:
        raise E.InvalidArgument("a template build needs a name")
    name, tag = split_ref(ref)
    tags = list(dict.fromkeys([tag, *_strings(data, "tags")]))
    limits = {k: data[k] for k in ("cpuCount", "memoryMB") if isinstance(data.get(k), int)}
    team = caller(request).team
    check_name(name, tags)  # before anything is looked up or made
    if name in request.app.state.service.templates.list():
        raise E.InvalidArgument(f"\"{name}\" is one of sandlot's templates: choose another name")
    if request.app.state.snapshots.find(name, team) is not None:
        raise E.InvalidArgument(f"\"{name}\" is the name of one of your snapshots: choose another name")
    tpl = _store(request).ensure(name, team)
    build = _store(request).new_build(tpl, tags, limits)
    note(template=tpl.id, build=build.id, name=name)
    return JSONResponse({"templateID": tpl.id, "buildID": build.id, "public": False, "names": [name],
                         "tags": tags, "aliases": [name]}, status_code=202)


def _own_template(request: Request):
    tpl = _store(request).find(request.path_params["template_id"], caller(request).team)
    if tpl is None:
        raise E.NotFound(f"template \"{request.path_params['template_id']}\" not found")
    return tpl


async def file_upload_link(request: Request) -> Response:
    tpl = _own_template(request)
    files_hash = request.path_params["hash"]
    if _files(request).asked(tpl, files_hash):
        return JSONResponse({"present": True}, status_code=201)
    expires = int(time.time()) + UPLOAD_TTL_S
    signature = sign(request.app.state.upload_key, tpl.team, tpl.id, files_hash, expires)
    url = str(request.url_for("template_upload", template_id=tpl.id, hash=files_hash))
    return JSONResponse({"present": False, "url": f"{url}?expires={expires}&signature={signature}"}, status_code=201)


async def upload(request: Request) -> Response:
    """The presigned PUT (its signature was checked by the upload gate)."""
    store = _store(request)
    tpl = store.by_id(request.path_params["template_id"])
    files_hash = request.path_params["hash"]
    note(template=tpl.id, files=files_hash)
    length = request.headers.get("content-length", "")
    await _files(request).receive(tpl.team, files_hash, request.stream(), int(length) if length.isdigit() else None)
    return Response(status_code=200)


async def start_build(request: Request) -> Response:
    tpl = _own_template(request)
    raw = await read_json_object(request)
    spec = build_spec.parse(raw)
    # checked after the body, with nothing awaited until the start: two starts of one build must not
    # both pass (two tasks of one build, the second one's never stopped with the server)
    build = _store(request).build(request.path_params["build_id"])
    if build is None or build.template_id != tpl.id:
        raise E.NotFound(f"build \"{request.path_params['build_id']}\" not found")
    if build.status != "waiting" or build.spec is not None:  # a started one waiting for a slot has its spec
        raise E.AlreadyExists(f"build \"{build.id}\" was started already")
    missing = [h for h in spec.file_hashes() if not _store(request).files_path(tpl.team, h).is_file()]
    if missing:
        raise E.InvalidArgument(f"the files of hash {missing[0]} were not uploaded")
    _builder(request).start(tpl, build, spec, raw)
    note(template=tpl.id, build=build.id, steps=len(spec.steps))
    return Response(status_code=202)


async def build_status(request: Request) -> Response:
    tpl = _own_template(request)
    build_id = request.path_params["build_id"]
    build = _builder(request).live(build_id) or _store(request).build(build_id)
    if build is None or build.template_id != tpl.id:
        raise E.NotFound(f"build \"{build_id}\" not found")
    try:
        offset = max(0, int(request.query_params.get("logsOffset", "0")))
        limit = min(PAGE, max(0, int(request.query_params.get("limit", str(PAGE)))))
    except ValueError:
        raise E.InvalidArgument("logsOffset and limit must be integers") from None
    entries = build.logs[offset:offset + limit]
    body = {"templateID": tpl.id, "buildID": build.id, "status": build.status, "logEntries": entries,
            "logs": [f"[{e['timestamp']}] {e['message']}" for e in entries]}
    if build.status == "error" and build.reason:
        body["reason"] = build.reason
    return JSONResponse(body)


async def alias(request: Request) -> Response:
    tpl = _store(request).find(request.path_params["alias"], caller(request).team)
    if tpl is None:
        raise E.NotFound(f"template \"{request.path_params['alias']}\" not found")
    return JSONResponse({"templateID": tpl.id, "public": False})


def _template_json(store: CustomTemplates, tpl) -> dict:
    tags = store.tags(tpl.id)
    default = store.tagged(tpl.id, DEFAULT_TAG)
    latest = store.build(tags[-1][1]) if tags else None
    shown = default or latest
    limits = shown.limits if shown else {}
    return {"templateID": tpl.id, "buildID": shown.id if shown else "", "names": [tpl.name], "aliases": [tpl.name],
            "public": False, "cpuCount": limits.get("cpuCount", 1), "memoryMB": limits.get("memoryMB", 512),
            "diskSizeMB": 2048, "createdAt": _iso(tpl.created_at),
            "updatedAt": _iso(shown.finished_at if shown else tpl.created_at), "createdBy": None,
            "lastSpawnedAt": None, "spawnCount": 0, "buildCount": len(set(b for _, b, _ in tags)),
            "envdVersion": "0.2.0", "buildStatus": shown.status if shown else "waiting",
            "tags": [t for t, _, _ in tags]}


async def list_templates(request: Request) -> Response:
    store = _store(request)
    return JSONResponse([_template_json(store, t) for t in store.list(caller(request).team)])


async def delete_template(request: Request) -> Response:
    """A custom template of the caller's team, else a snapshot (the SDK's delete_snapshot)."""
    tpl = _store(request).find(request.path_params["template_id"], caller(request).team)
    if tpl is None:
        return await delete_snapshot(request)
    note(template=tpl.id)
    running = [task for build, task in _builder(request).running.values() if build.template_id == tpl.id]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)  # their sandboxes gone, their layers let go
    named = {h for _, h in _store(request).uploads_named(template_id=tpl.id)}
    await asyncio.to_thread(_store(request).delete, tpl)
    _files(request).forget(tpl, named)  # those of its files no other template of the team uses
    return Response(status_code=204)


async def assign_tags(request: Request) -> Response:
    data = await read_json_object(request)
    target, tags = data.get("target"), _strings(data, "tags")
    if not isinstance(target, str) or not tags:
        raise E.InvalidArgument("target (name:tag) and tags are required")
    check_name(split_ref(target)[0], [split_ref(target)[1], *tags])  # well formed (and text) before any use
    found = _store(request).resolve(target, caller(request).team)
    if found is None:
        raise E.NotFound(f"template \"{target}\" not found")
    tpl, build = found
    _store(request).tag(tpl.id, tags, build.id)
    return JSONResponse({"buildID": build.id, "tags": tags}, status_code=201)


async def remove_tags(request: Request) -> Response:
    data = await read_json_object(request)
    name, tags = data.get("name"), _strings(data, "tags")
    if isinstance(name, str):
        check_name(split_ref(name)[0], tags)  # well formed (and text) before any use
    tpl = _store(request).find(name, caller(request).team) if isinstance(name, str) else None
    if tpl is None:
        raise E.NotFound(f"template \"{name}\" not found")
    store = _store(request)
    store.untag(tpl.id, tags)
    for old in store.unused_builds(tpl.id):
        store.layers.release(f"tplbuild:{old}")
    return Response(status_code=204)


async def list_tags(request: Request) -> Response:
    tpl = _own_template(request)
    return JSONResponse([{"tag": t, "buildID": b, "createdAt": _iso(c)} for t, b, c in _store(request).tags(tpl.id)])


def routes() -> list[Route]:
    return [
        Route("/v3/templates", request_build, methods=["POST"]),
        Route("/templates", list_templates, methods=["GET"]),
        Route("/templates/tags", assign_tags, methods=["POST"]),
        Route("/templates/tags", remove_tags, methods=["DELETE"]),
        Route("/templates/aliases/{alias}", alias, methods=["GET"]),
        Route("/templates/{template_id}/files/{hash}", file_upload_link, methods=["GET"]),
        Route("/v2/templates/{template_id}/builds/{build_id}", start_build, methods=["POST"]),
        Route("/templates/{template_id}/builds/{build_id}/status", build_status, methods=["GET"]),
        Route("/templates/{template_id}/tags", list_tags, methods=["GET"]),
        Route("/templates/{template_id}", delete_template, methods=["DELETE"]),
    ]


def upload_routes() -> list[Route]:
    """The signed upload (no API key: the URL's signature, checked by the upload gate)."""
    return [Route("/templates/{template_id}/files/{hash}/upload", upload, methods=["PUT"], name="template_upload",
                  middleware=[Middleware(UploadGate)])]
