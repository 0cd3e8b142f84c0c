"""A sandbox's workspace and security policy over REST (issue 13): what `POST /sandboxes` takes for
them, and the routes that change a running sandbox's permissions and commit or drop its changes.

Create body (sandlot's own fields, next to E2B's):

    "workspace": {"codebase": id | null, "path": "/workspace", "preset": "view-only" | ...,
                  "permissions": [{"pattern", "permission", "priority"?, "type"?}, ...]}
    "security":  {"allow_shell", "allow_subprocess", "allow_file_write", "blocked_paths",
                  "max_output_size", "blocked_imports" (advisory only), "audit_enabled"}

Routes (API key):

    GET  /sandboxes/{id}/permissions        -> {"path", "codebase", "permissions": [...]}
    PUT  /sandboxes/{id}/permissions        {"preset"?, "permissions"?} -> the same; holds for
                                            every open from now on
    POST /sandboxes/{id}/workspace/commit   -> the codebase (its next version holds the sandbox's
                                            changes; the sandbox goes on from that version)
    POST /sandboxes/{id}/workspace/discard  -> {}: the sandbox's changes are dropped
"""

from __future__ import annotations

import asyncio

from pydantic import ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..runtimes.policy import SecurityPolicy, rules_of, workspace_of
from .sandbox_views import running
from .bodies import JsonBody, read_model
from .codebases import codebase_json, store
from .request_info import note


class WorkspaceIn(JsonBody):
    model_config = ConfigDict(extra="forbid")

    codebase: str | None = None
    path: str | None = None
    preset: str | None = None
    permissions: list[dict] | None = None


class SecurityIn(JsonBody):
    model_config = ConfigDict(extra="forbid", strict=True)

    allow_shell: bool = True
    allow_subprocess: bool = True
    allow_file_write: bool = True
    blocked_paths: list[str] = []
    max_output_size: int | None = None
    blocked_imports: list[str] = []
    audit_enabled: bool = True


class PermissionsIn(JsonBody):
    model_config = ConfigDict(extra="forbid")

    preset: str | None = None
    permissions: list[dict] | None = None


def from_create(request: Request, team: str, workspace: dict | None, security: dict | None):
    """(Workspace | None, SecurityPolicy) from a create body's fields; InvalidArgument if bad, NotFound
    for a codebase that is not `team`'s (worded as for an unknown one)."""
    policy = SecurityPolicy()
    if security is not None:
        s = _parse(SecurityIn, security, "security")
        policy = SecurityPolicy(s.allow_shell, s.allow_subprocess, s.allow_file_write, tuple(s.blocked_paths),
                                s.max_output_size, tuple(s.blocked_imports), s.audit_enabled).validate()
    if workspace is None:
        return None, policy
    w = _parse(WorkspaceIn, workspace, "workspace")
    source = None
    if w.codebase:
        codebases = store(request)
        codebases.get(w.codebase, team)
        source = codebases.tree(w.codebase)
        note(codebase=w.codebase)
    return workspace_of(source, w.path, w.preset, w.permissions or (), w.codebase), policy


def _parse(model, data, where: str):
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise E.InvalidArgument(f"{where} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise E.InvalidArgument(f"invalid {where}{'.' + field if field else ''}: {first['msg']}") from None


def _workspaces(request: Request):
    workspaces = request.app.state.service.runtime.workspaces
    if workspaces is None:
        raise E.Unsupported("this server's runtime has no workspaces (they need a server run as root)")
    return workspaces


def _state(request: Request) -> tuple[str, dict]:
    sandbox_id = running(request).id
    state = _workspaces(request).state(sandbox_id)
    if state is None:
        raise E.NotFound(f"sandbox {sandbox_id} has no workspace (create it with a codebase or permissions)")
    return sandbox_id, state


def _json(state: dict) -> dict:
    return {"path": state["path"], "codebase": state.get("codebase"), "permissions": state["rules"]}


async def get_permissions(request: Request) -> Response:
    return JSONResponse(_json(_state(request)[1]))


async def set_permissions(request: Request) -> Response:
    body = await read_model(request, PermissionsIn)
    sandbox_id, _ = _state(request)
    rules = rules_of(body.preset, body.permissions or ())
    state = await asyncio.to_thread(_workspaces(request).set_rules, sandbox_id, rules)
    return JSONResponse(_json(state))


async def commit(request: Request) -> Response:
    sandbox_id, state = _state(request)
    cid = state.get("codebase")
    if cid is None:
        raise E.InvalidArgument(f"sandbox {sandbox_id}'s workspace has no codebase to commit to")
    note(codebase=cid)
    workspaces, codebases = _workspaces(request), store(request)

    def work():
        codebases.apply_layer(cid, workspaces.layer(sandbox_id))
        workspaces.reset(sandbox_id, codebases.tree(cid))  # on top of what it committed, no layer left
        codebases.collect(cid)
        return codebases.get(cid)

    return JSONResponse(codebase_json(await asyncio.to_thread(work)))


async def discard(request: Request) -> Response:
    sandbox_id, _ = _state(request)
    await asyncio.to_thread(_workspaces(request).reset, sandbox_id)
    return JSONResponse({})


def routes() -> list[Route]:
    sid = "/sandboxes/{sandbox_id}"
    return [
        Route(sid + "/permissions", get_permissions, methods=["GET"]),
        Route(sid + "/permissions", set_permissions, methods=["PUT"]),
        Route(sid + "/workspace/commit", commit, methods=["POST"]),
        Route(sid + "/workspace/discard", discard, methods=["POST"]),
    ]
