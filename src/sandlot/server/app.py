"""Assembly of the control plane: the app's services, and every route with its access rule.

One ASGI app, one port, every front door (paths are disjoint, docs/e2b.md §1.2):

    route                                   access (auth.py)     served by
    /health                                 public               E2B's API health; sandbox traffic
                                                                 (routing headers) → envd's /health
    /_sandlot/health, /openapi.json         public               here, openapi.py
    /ca.pem                                 public               tls.py (the local CA's certificate)
    /.well-known/openid-configuration,      public               identity.py (the key verifying the
    /.well-known/jwks.json                                       sandboxes' workload identity tokens)
    /metrics                                SANDLOT_METRICS_AUTH metrics.py
                                            (an admin key)
    /sandboxes, /v2/sandboxes ...           API key, of the      api.py
                                            sandbox's team
    /sandboxes/{id}/sessions ...            API key, of the      sessions.py (stateful shells),
    /sandboxes/{id}/permissions, /workspace sandbox's team       workspaces.py (path permissions)
    /codebases ...                          API key, of the      codebases.py (codebase_store.py)
                                            codebase's team
    /sandboxes/{id}/ports ...               API key, of the      ports.py (preview URLs, port waits)
                                            sandbox's team
    /audit                                  API key              audit_api.py (a team's rows; all: admin)
    /sandboxes/{id}/snapshots, .../fork,    API key, of the      snapshots.py, transfer.py (export,
    /snapshots..., DELETE /templates/{id}   snapshot's team      import)
    /volumes...                             API key, of the      volumes.py
                                            volume's team
    /volumecontent/{id}/...                 the volume's token   volumes.py (volume_gate.py)
    /v3/templates, /v2/templates/{id}/...,  API key, of the      template_routes.py (builds:
    /templates/{id}/..., /templates/tags    template's team      template_builder.py)
    PUT /templates/{id}/files/{h}/upload    its signed URL       template_routes.py (upload_gate.py)
    /mcp (when serve mounts it)             API key              tools/mcp_server.py (a client of this
                                                                 server, composed by cli/serve.py)
    /files, /envs, /process.Process/*,      sandbox token or     envd/ (routed by E2b-Sandbox-Id)
    /filesystem.Filesystem/*, /execute,     signature
    /contexts

Every request passes Observe (access log, metrics, audit trail); a route's body is bounded
(bodies.py). Teams: the guard of every API-key route answers 404 for another team's sandbox,
snapshot or volume (auth.py, `ApiKeys.owned`); quotas and host admission are checked by the
service (quotas.py).
Before the routes, the port proxy (proxy.py) takes the requests for a port of a sandbox (Host
`{port}-{id}.{domain}`, or E2B's routing headers naming a port other than envd's): they carry no API
key, and the sandbox's own ingress settings decide (public, or its traffic token or a preview URL).
Everything else, WebSocket included, reaches the routes and their rules (a WebSocket no route
serves: refused).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import _exceptions as E
from ..layers import LayerStore
from ..layers.holding import HoldingRuntime
from ..runtimes import make_runtime
from ..runtimes.egress_proxy import EgressTls, upstream_context
from ..templates import TemplateStore
from ..volumes import VolumeStore
from . import (api, audit_api, codebases, identity, network_api, openapi, packages_api, sessions, snapshots,
               template_routes, tls, transfer, volumes, workspaces)
from .audit import AuditLog
from .auth import Access, ApiKeys, requires, secure
from .certs import LocalCA
from .codebase_store import CodebaseStore
from .config import Config
from .custom_templates import CustomTemplates
from .denials import Denials
from .envd import envd_routes
from .envd.code import BrokenOff
from .events import Events
from .metrics import Metrics
from .observe import Observe
from .request_info import CLIENT_LEFT
from .packages import PackageManager
from .ports import Exposures
from .ports import routes as port_routes
from .proxy import PortProxy
from .service import SandboxService
from .snapshots import Snapshots
from .store import Store
from .template_builder import TemplateBuilder
from .template_files import TemplateFiles
from .transfer import Transfer

log = logging.getLogger("sandlot.server")

# Headers only sandbox traffic carries (docs/e2b.md §1.3): SDKs before 2.7 send no routing
# headers, but send the sandbox's access token.
SANDBOX_HEADERS = (b"e2b-sandbox-id", b"e2b-sandbox-port", b"x-access-token")


async def _sandlot_error(request: Request, exc: E.SandlotError) -> JSONResponse:
    # a refusal that retrying cannot fix (a quota): the e2b SDK would retry a 429 three times
    headers = {"Should-Retry": "false"} if exc.details.get("retry") is False else None
    return JSONResponse({"code": exc.status, "message": exc.message}, status_code=exc.status, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"code": exc.status_code, "message": exc.detail}, status_code=exc.status_code)


async def _client_left(request: Request, exc: ClientDisconnect) -> Response:
    return Response(status_code=CLIENT_LEFT)  # nobody reads it; the access log shows 499


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, BrokenOff):  # on purpose (after the response began, this answer is not sent)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"code": 500, "message": f"internal error: {type(exc).__name__}"}, status_code=500)


def _not_broken_off(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], BrokenOff))


async def _sandlot_health(request: Request) -> JSONResponse:
    """Liveness of the server, with its sandbox counts."""
    svc: SandboxService = request.app.state.service
    return JSONResponse({"status": "ok", "running": len(svc.live), "paused": len(svc.paused)})


class Health:
    """GET /health: E2B's API health check (200 "Health check successful", 503 while the server is
    starting or stopping), unless the request is sandbox traffic: then envd's /health for that
    sandbox (204 running, 502 gone), which the SDK's `is_running()` asks."""

    def __init__(self, sandbox_health: ASGIApp):
        self.sandbox_health = sandbox_health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if any(name in SANDBOX_HEADERS for name, _ in scope["headers"]):
            return await self.sandbox_health(scope, receive, send)
        if scope["app"].state.serving:
            response: Response = PlainTextResponse("Health check successful")
        else:
            response = PlainTextResponse("Service is unavailable", status_code=503)
        await response(scope, receive, send)


def ensure_first_key(store: Store, config: Config) -> str | None:
    """On the very first start, create an API key and return it (it is shown once): an admin key of
    the default team, as the operator's own."""
    if store.has_keys() or config.api_key:
        return None
    _, key = store.create_key("first key", admin=True)
    return key


class Extension(Protocol):
    """A front door built above the server and composed into it by `serve` (the MCP endpoint, which
    is a client of this server: server/ imports nothing of the client's): served to API-key
    holders at its path, its lifespan entered once the service runs."""

    def route(self, path: str) -> BaseRoute: ...

    def lifespan(self) -> AbstractAsyncContextManager[None]: ...


def build_app(config: Config, extensions: Mapping[str, Extension] | None = None) -> Starlette:
    """The app and its services, built here and nowhere else. `extensions`: path -> front door."""
    extensions = dict(extensions or {})
    config.home.mkdir(parents=True, exist_ok=True)
    store = Store(config.db_path)
    keys = ApiKeys(store, config.api_key)
    metrics = Metrics()
    audit = AuditLog(config.db_path, config.audit_retention_days, config.audit_max_rows)
    layers = LayerStore(config.home)
    # namespace as root, rootless otherwise; its sandboxes hold the layers they are stacked on
    # the network.rules proxy's HTTPS: leaves from a CA of this server's, upstreams verified
    egress_tls = EgressTls(lambda: LocalCA(config.home / "ca" / "egress", "sandlot egress CA"),
                           upstream_context(config.egress_ca_file),
                           upstream_context(config.egress_ca_file, ("h2", "http/1.1")))
    runtime = HoldingRuntime(make_runtime(config.home, egress_tls, config.egress_team_share), layers)
    service = SandboxService(config, store, runtime, TemplateStore(config.home), layers, Events(metrics, audit))
    service.networks.egress_tls = egress_tls
    # workload identity tokens (E2B's iam) the egress proxy mints into rule headers (identity.py)
    service.networks.identity = identity.Issuer(config.home, config.identity_issuer or (
        f"{config.scheme}://{config.domain or f'{config.host}:{config.port}'}"))
    egress_tls.identity = service.networks.resolve_identity
    # snapshots a create may name (snapshots.py); volumes (volumes.py)
    service.snapshots = snapshot_store = Snapshots(service, service.create, config, service.templates, service.pools,
                                                   service.lifecycle, layers)
    service.volumes = VolumeStore(config.home, config.db_path)
    # templates built from recipes (E2B's Template builder, Dockerfiles): template_routes.py
    custom = CustomTemplates(config.db_path, config.home, layers)
    packages = PackageManager(config.home / "cache" / "wheels")
    builder = TemplateBuilder(service, custom, packages)
    # their uploaded files: bounded per team, counted in max_disk_mb, swept by the reaper's loop
    service.template_files = template_files = TemplateFiles(custom, service.quotas, config.template_files_max_bytes,
                                                            config.template_files_ttl)
    service.reaper.every(template_files.sweep_s, template_files.sweep)
    config.pool_templates = tuple(snapshot_store.canonical(n) for n in config.pool_templates)
    codebase_store = CodebaseStore(config.home / "codebases", config.max_upload_bytes)
    # what a route's path names must be the caller's team's (auth.py): every /sandboxes/{sandbox_id}...
    # route, snapshots (DELETE /templates/{template_id} is E2B's delete_snapshot), volumes and codebases by id
    keys.owned("sandbox_id", service.team_of, "sandbox")
    keys.owned("template_id", lambda ref: snapshot_store.team_of(ref) or custom.team_of(ref), "template")
    keys.owned("snapshot_id", snapshot_store.team_of, "snapshot")
    keys.owned("volume_id", service.volumes.team_of, "volume")
    keys.owned("codebase_id", codebase_store.team_of, "codebase")
    # denied file operations in workspaces, reported by the permission filesystem (denials.py)
    permfs = runtime.workspaces
    denials = Denials(permfs.denials, service, audit) if permfs is not None else None
    metrics.watch(service, service.pools, config)
    exposures = Exposures(config.home)  # preview URLs' signing key (ports.py)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # uvicorn logs each exception out of the app with its traceback: not the deliberate ones
        logging.getLogger("uvicorn.error").addFilter(_not_broken_off)
        await service.startup()
        custom.interrupted()
        runtime.forget_gone({r.id for r in store.live()})
        for name in snapshot_store.warm_names():
            service.pools.refill(name)
        if denials is not None:
            await denials.start()
        app.state.serving = True
        try:
            async with contextlib.AsyncExitStack() as stack:
                for extension in extensions.values():
                    await stack.enter_async_context(extension.lifespan())
                yield
        finally:
            app.state.serving = False
            if denials is not None:
                await denials.close()
            await builder.close()
            await service.shutdown()
            # volumes no sandbox left running uses are unmounted
            service.volumes.close(in_use={(r.team, m["name"]) for r in store.live() if r.pause_mode != "filesystem"
                                          for m in r.volume_mounts})
            audit.close()
            store.close()
            snapshot_store.close()
            custom.close()
            layers.close()

    app = Starlette(
        routes=routes(config, service, metrics, keys, extensions),
        # the port proxy (issue 12) before routing: a request for a sandbox's port carries no API key
        middleware=[Middleware(Observe, metrics=metrics, audit=audit),
                    Middleware(PortProxy, service=service, exposures=exposures, domain=config.domain)],
        exception_handlers={E.SandlotError: _sandlot_error, HTTPException: _http_error,
                            ClientDisconnect: _client_left, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.serving = False
    app.state.service = service
    app.state.identity = service.networks.identity
    app.state.snapshots = snapshot_store
    app.state.custom_templates = custom
    app.state.template_builder = builder
    app.state.template_files = template_files
    app.state.upload_key = secrets.token_bytes(32)  # signs template file upload URLs (template_routes.py)
    app.state.volumes = service.volumes
    # who holds a layer, by holder kind: an import reuses a layer of this host only if the
    # importing team holds it already (transfer.py). Sandboxes' holders are not asked: what an export
    # names, they hold through a snapshot or template of their team
    layer_owners = {"snapshot": snapshot_store.team_of, "tplbuild": custom.team_of_build,
                    "tplstep": custom.team_of_build, "tplfailed": custom.team_of}
    app.state.transfer = Transfer(snapshot_store, layers, config.storage or str(config.home / "storage"),
                                  layer_owners)
    app.state.store = store
    app.state.audit = audit
    app.state.codebases = codebase_store
    app.state.config = config
    app.state.metrics = metrics
    app.state.packages = packages
    app.state.exposures = exposures
    return app


def routes(config: Config, service: SandboxService, metrics: Metrics, keys: ApiKeys,
           extensions: Mapping[str, Extension] | None = None) -> list[BaseRoute]:
    """Every route with its access rule and body bound."""
    json_bytes = config.max_json_bytes
    envd = envd_routes(service, max_upload_bytes=config.max_upload_bytes)
    [sandbox_health] = _take(envd, lambda r: isinstance(r, Route) and r.path == "/health")
    # these stream their bodies and bound them themselves: uploads (SANDLOT_MAX_UPLOAD_BYTES), the
    # Connect services (connectrpc's read_max_bytes per message)
    uploads = _take(envd, lambda r: isinstance(r, Route) and r.path == "/files" and "POST" in (r.methods or ()))
    connect = _take(envd, lambda r: isinstance(r, Mount))  # first: every command is one of their calls,
    # and the router tries each route's pattern in turn (no other path starts as theirs do)
    return secure([
        *requires(Access.SANDBOX, connect, keys, body=None),
        *requires(Access.PUBLIC, [
            Route("/health", Health(sandbox_health.app), methods=["GET"]),
            Route("/_sandlot/health", _sandlot_health, methods=["GET"]),
            Route("/openapi.json", openapi.endpoint, methods=["GET"]),
            Route("/ca.pem", tls.ca_pem, methods=["GET"]),  # what clients trust with SANDLOT_TLS=local-ca
            *identity.routes(),  # what verifiers of the sandboxes' workload identity tokens fetch
        ], keys, body=json_bytes),
        *requires(METRICS_ACCESS[config.metrics_auth], [Route("/metrics", metrics.endpoint, methods=["GET"])], keys,
                  body=json_bytes),
        *requires(Access.API_KEY, [*api.routes(), *network_api.routes(), *packages_api.routes()], keys,
                  body=json_bytes),
        *requires(Access.API_KEY, port_routes(), keys, body=json_bytes),  # preview URLs, port waits
        *requires(Access.API_KEY, audit_api.routes(), keys, body=json_bytes),
        # sandlot's own, beside E2B's: sessions, a sandbox's workspace, codebases (whose uploads
        # stream their bodies and bound them with SANDLOT_MAX_UPLOAD_BYTES)
        *requires(Access.API_KEY, [*sessions.routes(), *workspaces.routes(), *codebases.routes()], keys,
                  body=json_bytes),
        *requires(Access.API_KEY, codebases.upload_routes(), keys, body=None),
        # snapshots, fork, their export and import, volumes (snapshots.py, transfer.py, volumes.py);
        # template builds (template_routes.py; its DELETE /templates/{id} deletes snapshots too)
        *requires(Access.API_KEY, [*template_routes.routes(), *snapshots.routes(), *transfer.routes(),
                                   *volumes.routes()], keys, body=json_bytes),
        # a template build's file upload: the URL's signature is the credential (upload_gate.py)
        *requires(Access.UPLOAD, template_routes.upload_routes(), keys, body=config.max_upload_bytes),
        *requires(Access.VOLUME, volumes.content_routes(), keys, body=config.max_upload_bytes),
        *requires(Access.API_KEY, [ext.route(path) for path, ext in (extensions or {}).items()], keys,
                  body=json_bytes),
        *requires(Access.SANDBOX, envd, keys, body=json_bytes),
        *requires(Access.SANDBOX, uploads, keys, body=None),
    ], keys)


METRICS_ACCESS = {"admin": Access.ADMIN, "api-key": Access.API_KEY, "none": Access.PUBLIC}


def _take(routes: list[BaseRoute], which) -> list[BaseRoute]:
    """Remove and return the routes `which` selects (one at least)."""
    taken = [r for r in routes if which(r)]
    assert taken, "no such envd route"
    for route in taken:
        routes.remove(route)
    return taken
