"""The control-plane REST API, in E2B's shape (docs/e2b.md §2) plus sandlot's own extensions.

Extensions ride in the same bodies (unknown keys are ignored by E2B): `limits` on create
(memory_mb, cpu_count, pids, disk_mb; unknown keys in it are refused), `network.bandwidthMbps`.
Errors are JSON {"code": int, "message": str}.
Network (issue 12): `allow_internet_access` and `network` (allowOut, denyOut, dnsServers) become a
NetworkPolicy (network_api.py; PUT /sandboxes/{id}/network replaces it live). sandlot's own
routes for a sandbox's packages: packages_api.py. `workspace` and `security` on create: a codebase
with path permissions and the security policy (workspaces.py).

Teams (teams.py): a sandbox belongs to the team of the key that created it; the routes' guard
answers another team's sandbox as an unknown one (auth.py), and a list holds only the caller's
team's sandboxes (their access tokens included, for that team alone).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Awaitable
from typing import Any
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote

from pydantic import ConfigDict, Field
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..runtimes.policy import Limits
from . import identity, logs_api, template_sandboxes
from .network_api import NetworkIn, egress_from, ingress_from
from .auth import caller
from .bodies import JsonBody, client_left, page_limit, read_model
from .request_info import note, request_info
from .sandbox_views import detail_json, domain_of, rfc3339, sandbox_json
from .live import CreateRequest, LiveSandbox
from .service import SandboxService
from .store import SandboxRecord

TEMPLATE_ALIASES = {"code-interpreter-v1": "code-interpreter"}
BUILD_RETRY_AFTER = 2  # seconds, for a create whose template is being built


class LimitsIn(JsonBody):
    # sandlot's own field: a misspelt limit or a quoted number is an error, not a silent default
    model_config = ConfigDict(extra="forbid", strict=True)

    memory_mb: int = Limits.memory_mb
    cpu_count: float = Limits.cpu_count
    pids: int = Limits.pids
    disk_mb: int = Limits.disk_mb


class AutoResumeIn(JsonBody):
    enabled: bool = False


class VolumeMountIn(JsonBody):
    name: str
    path: str


class CreateIn(JsonBody):
    templateID: str | None = None  # the server's default template
    timeout: int | None = None
    metadata: dict[str, str] | None = None
    envVars: dict[str, str] | None = None
    secure: bool = True
    autoPause: bool = False
    autoPauseMemory: bool = True
    autoResume: AutoResumeIn | None = None
    volumeMounts: list[VolumeMountIn] | None = None
    allow_internet_access: bool | None = None
    network: NetworkIn | None = None
    iam: Any = None  # E2B's workload identity, checked by identity.parse
    limits: LimitsIn | None = None
    # sandlot's own, checked in workspaces.py
    workspace: dict | None = Field(None, description="a codebase at /workspace with path permissions: "
                                   "{codebase, path, preset, permissions}")
    security: dict | None = Field(None, description="the security policy: {allow_shell, allow_subprocess, "
                                  "allow_file_write, blocked_paths, max_output_size, blocked_imports (advisory "
                                  "only), audit_enabled}")


class TimeoutIn(JsonBody):
    timeout: int | None = Field(default=None)
    memory: bool | None = None  # connect: false resumes from the files only (a cold boot)


# ---- lifecycle (server/lifecycle.py) ----
class PauseIn(JsonBody):
    memory: bool = True  # false: keep the files only (pause mode "filesystem")


def lifecycle_fields(body: CreateIn) -> dict:
    auto_resume = bool(body.autoResume and body.autoResume.enabled)
    if auto_resume and not body.autoPause:
        raise E.InvalidArgument("autoResume needs autoPause (lifecycle on_timeout 'pause')")
    if auto_resume and not body.autoPauseMemory:
        raise E.InvalidArgument("autoResume cannot be combined with a filesystem-only auto-pause: "
                                "such a sandbox is resumed by connect")
    return {"auto_pause_mode": "full" if body.autoPauseMemory else "filesystem", "auto_resume": auto_resume}
# ---- end lifecycle ----


def service_of(request: Request) -> SandboxService:
    return request.app.state.service


async def create(request: Request) -> Response:
    body = await read_model(request, CreateIn)
    svc = service_of(request)
    limits = Limits(**body.limits.model_dump()) if body.limits else Limits()
    template = TEMPLATE_ALIASES.get(body.templateID, body.templateID or svc.config.default_template)
    team = caller(request).team
    from .workspaces import from_create  # it builds on this module's helpers

    workspace, security = from_create(request, team, body.workspace, body.security)
    # a snapshot of the caller's team, by its id (the key of its pool), with its metadata under the create's
    snap = request.app.state.snapshots.for_create(template, team)
    # or a template of the team built from a recipe (template_sandboxes.py): its stack, its limits
    built = None if snap else await template_sandboxes.for_create(
        request.app.state.custom_templates, svc.lifecycle, template, team)
    if built is not None and built.limits is not None and body.limits is None:
        limits = built.limits
    req = CreateRequest(
        template=snap.id if snap else (built.name if built else template),
        timeout=body.timeout if body.timeout is not None else svc.config.default_timeout,
        metadata={**(snap.metadata if snap else {}), **(body.metadata or {})}, envs=body.envVars or {},
        limits=limits, auto_pause=body.autoPause, secure=body.secure, team=team, **lifecycle_fields(body),
        volume_mounts=[m.model_dump() for m in body.volumeMounts or []], workspace=workspace, security=security,
        stack=built.template if built else None,
        egress=egress_from(body.allow_internet_access, body.network), network=ingress_from(body.network),
        iam=identity.parse(body.iam))
    identity.check_references(req.egress.rules if req.egress else (), req.iam)
    info = request_info(request.scope)
    info.detail["template"] = req.template
    try:
        creating = svc.create(req) if built is None else template_sandboxes.create(svc, req, built)
        live = await _for_its_client(request, svc, creating)
    except E.TemplateBuilding as e:  # answered at once, with the progress; nothing is created later
        return JSONResponse({"code": e.status, "message": e.message, **e.details}, status_code=e.status,
                            headers={"Retry-After": str(BUILD_RETRY_AFTER)})
    return JSONResponse(sandbox_json(live, domain_of(request)), status_code=201)


# ---- a create nobody waits for any more ----
async def _for_its_client(request: Request, svc: SandboxService, creating: Awaitable[LiveSandbox]) -> LiveSandbox:
    """A create runs to its end even if its client leaves or this request is cancelled (a thread
    may be making the sandbox); a sandbox whose client left before learning its id is then killed
    at once, rather than left running (and counted in its team's quota) until its timeout."""
    task = asyncio.ensure_future(creating)
    gone = asyncio.ensure_future(client_left(request.receive))
    try:
        live = await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(functools.partial(_kill_unclaimed, svc))
        raise
    finally:
        gone.cancel()
    request_info(request.scope).sandbox_id = live.id  # for the access log and the audit trail
    if gone.done() and not gone.cancelled():
        await svc.kill(live.id, reason=UNCLAIMED)
        note(ended=UNCLAIMED)
        raise ClientDisconnect()
    return live


UNCLAIMED = "client left during create"


def _kill_unclaimed(svc: SandboxService, task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None:
        killing = asyncio.ensure_future(svc.kill(task.result().id, reason=UNCLAIMED))
        _killing.add(killing)  # a task nobody references may be collected before it runs
        killing.add_done_callback(_killing.discard)


_killing: set[asyncio.Future] = set()
# ---- end ----


async def get_sandbox(request: Request) -> Response:
    return JSONResponse(detail_json(service_of(request).record(request.path_params["sandbox_id"]), domain_of(request)))


async def kill(request: Request) -> Response:
    await service_of(request).kill(request.path_params["sandbox_id"])
    return Response(status_code=204)


async def set_timeout(request: Request) -> Response:
    body = await read_model(request, TimeoutIn)
    if body.timeout is None:
        raise E.InvalidArgument("timeout is required")
    service_of(request).set_timeout(request.path_params["sandbox_id"], body.timeout)
    return Response(status_code=204)


async def connect(request: Request) -> Response:
    body = await read_model(request, TimeoutIn)
    svc, sandbox_id = service_of(request), request.path_params["sandbox_id"]
    if body.memory is False and sandbox_id in svc.paused:  # on_resume="reboot": from the files only
        try:
            await svc.pause(sandbox_id, "filesystem")
        except E.AlreadyExists:
            pass
    live, resumed = await svc.connect(sandbox_id, body.timeout)
    return JSONResponse(sandbox_json(live, domain_of(request)), status_code=201 if resumed else 200)


async def pause(request: Request) -> Response:
    body = await read_model(request, PauseIn)
    try:
        await service_of(request).pause(request.path_params["sandbox_id"], "full" if body.memory else "filesystem")
    except E.AlreadyExists as e:
        return JSONResponse({"code": 409, "message": e.message}, status_code=409)
    return Response(status_code=204)


async def resume(request: Request) -> Response:
    body = await read_model(request, TimeoutIn)
    live = await service_of(request).resume(request.path_params["sandbox_id"], body.timeout)
    return JSONResponse(sandbox_json(live, domain_of(request)), status_code=201)


async def metrics(request: Request) -> Response:
    """Samples in [start, end] (unix seconds, both optional), oldest first."""
    bounds = []
    for name in ("start", "end"):
        value = request.query_params.get(name)
        try:
            bounds.append(float(value) if value not in (None, "") else None)
        except ValueError:
            raise E.InvalidArgument(f"{name} must be a unix time in seconds, got {value!r}") from None
    samples = await service_of(request).usage.metrics(request.path_params["sandbox_id"], *bounds)
    return JSONResponse([{
        "timestamp": rfc3339(m["timestamp"]), "timestampUnix": int(m["timestamp"]),
        "cpuCount": max(1, round(m["cpu_count"])), "cpuUsedPct": m["cpu_used_pct"], "memUsed": m["mem_used"],
        "memTotal": m["mem_total"], "memCache": m["mem_cache"], "diskUsed": m["disk_used"],
        "diskTotal": m["disk_total"],
        # sandlot's own: bytes through the sandbox's network link (0 without one)
        "networkTxBytes": m.get("net_out", 0), "networkRxBytes": m.get("net_in", 0),
    } for m in samples])


def _parse_started_after(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise E.InvalidArgument(f"startedAfter is not an RFC 3339 time: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # no offset: read as UTC


def _started(rec: SandboxRecord) -> datetime:
    # to the microsecond, as `startedAt` shows it: a sandbox's own startedAt lists it
    return datetime.fromtimestamp(rec.started_at, timezone.utc)


def _cursor(rec: SandboxRecord) -> str:
    return base64.urlsafe_b64encode(json.dumps([rec.started_at, rec.id]).encode()).decode()


def _parse_cursor(token: str) -> tuple[float, str]:
    try:
        started, sid = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float(started), str(sid)
    except (ValueError, TypeError):
        raise E.InvalidArgument("nextToken is not valid") from None


async def list_sandboxes(request: Request) -> Response:
    q = request.query_params
    states = {s for s in q.get("state", "").split(",") if s} or {"running", "paused"}
    if bad := states - {"running", "paused"}:
        raise E.InvalidArgument(f"unknown state filter: {', '.join(sorted(bad))}")
    # metadata is one query value holding "k=v&k2=v2" whose keys and values the SDK quoted before
    # urlencode quoted the whole again: decode the pairs, then each key and value once more.
    wanted_meta = {unquote(k): unquote(v) for k, v in parse_qsl(q.get("metadata", ""), keep_blank_values=True)}
    limit = page_limit(q)
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise E.InvalidArgument("order must be asc or desc")
    after = _parse_started_after(q["startedAfter"]) if q.get("startedAfter") else None
    template = q.get("template")
    template = TEMPLATE_ALIASES.get(template, template)  # as create maps it

    team = caller(request).team
    recs = [r for r in service_of(request).listed()
            if r.team == team and r.state in states
            and all(r.metadata.get(k) == v for k, v in wanted_meta.items())
            and (after is None or _started(r) >= after)
            and (template is None or r.template == template)]
    recs.sort(key=lambda r: (r.started_at, r.id), reverse=order == "desc")
    if token := q.get("nextToken"):
        key = _parse_cursor(token)
        recs = [r for r in recs if ((r.started_at, r.id) < key if order == "desc" else (r.started_at, r.id) > key)]
    page, more = recs[:limit], len(recs) > limit
    headers = {"X-Next-Token": _cursor(page[-1])} if more else {}
    return JSONResponse([detail_json(r, domain_of(request)) for r in page], headers=headers)


def routes() -> list[Route]:
    sid = "/sandboxes/{sandbox_id}"
    return [
        Route("/sandboxes", create, methods=["POST"]),
        Route("/v2/sandboxes", create, methods=["POST"]),
        Route("/sandboxes", list_sandboxes, methods=["GET"]),
        Route("/v2/sandboxes", list_sandboxes, methods=["GET"]),
        Route(sid, get_sandbox, methods=["GET"]),
        Route(sid, kill, methods=["DELETE"]),
        Route(sid + "/timeout", set_timeout, methods=["POST"]),
        Route(sid + "/connect", connect, methods=["POST"]),
        Route("/v2" + sid + "/connect", connect, methods=["POST"]),
        Route(sid + "/pause", pause, methods=["POST"]),
        Route(sid + "/resume", resume, methods=["POST"]),
        Route(sid + "/metrics", metrics, methods=["GET"]),
        # --- a sandbox's logs (logs_api.py) ---
        *logs_api.routes(),
    ]
