"""Assembly of the control plane: one ASGI app, one port, every front door.

    /sandboxes, /v2/sandboxes ...       control plane (API key)          api.py
    /process.Process/*, /filesystem.*,  envd, routed by E2b-Sandbox-Id   envd/
    /files, /health, /envs              (access token or signature)
    /_sandlot/health                    liveness of the server itself
"""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import _exceptions as E
from ..runtimes import make_runtime
from ..templates import TemplateStore
from ..layers import LayerStore
from ..layers.holding import HoldingRuntime
from ..volumes import VolumeStore
from . import api, snapshots, transfer, volumes
from .auth import KeyAuth
from .config import Config
from .envd import envd_routes
from .envd.code import BrokenOff
from .lifecycle import Lifecycle
from .service import SandboxService
from .snapshots import Snapshots, SnapshotTemplates
from .transfer import Transfer
from .store import Store

log = logging.getLogger("sandlot.server")


async def _sandlot_error(request: Request, exc: E.SandlotError) -> JSONResponse:
    return JSONResponse({"code": exc.status, "message": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"code": exc.status_code, "message": exc.detail}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, BrokenOff):  # on purpose (after the response began, this answer is not sent)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"code": 500, "message": f"internal error: {type(exc).__name__}"}, status_code=500)


def _not_broken_off(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], BrokenOff))


async def _health(request: Request) -> JSONResponse:
    svc: SandboxService = request.app.state.service
    return JSONResponse({"status": "ok", "running": len(svc.live), "paused": len(svc.paused)})


def ensure_first_key(store: Store, config: Config) -> str | None:
    """On the very first start, create an API key and return it (it is shown once)."""
    if store.has_keys() or config.preset_api_key:
        return None
    _, key = store.create_key("first key")
    return key


def build_app(config: Config) -> Starlette:
    config.home.mkdir(parents=True, exist_ok=True)
    store = Store(config.db_path)
    layers = LayerStore(config.home)
    # namespace as root, rootless otherwise; its sandboxes hold the layers they are stacked on
    runtime = HoldingRuntime(make_runtime(config.home), layers)
    service = SandboxService(config, store, runtime, TemplateStore(config.home))
    # snapshots and lifecycle (snapshots.py, lifecycle.py): snapshots resolve as templates
    service.lifecycle = Lifecycle(service, layers)
    snapshot_store = Snapshots(service, service.lifecycle, layers)
    service.volumes = VolumeStore(config.home, config.db_path)  # volumes.py
    service.templates = SnapshotTemplates(service.templates, snapshot_store)
    config.pool_templates = tuple(snapshot_store.canonical(n) for n in config.pool_templates)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # uvicorn logs each exception out of the app with its traceback: not the deliberate ones
        logging.getLogger("uvicorn.error").addFilter(_not_broken_off)
        await service.startup()
        runtime.forget_gone({r.id for r in store.live()})
        for name in snapshot_store.warm_names():
            service._schedule_refill(name)
        try:
            yield
        finally:
            await service.shutdown()
            # volumes no sandbox left running uses are unmounted
            service.volumes.close(in_use={m["name"] for r in store.live() if r.pause_mode != "filesystem"
                                          for m in r.volume_mounts})
            store.close()
            snapshot_store.close()
            layers.close()

    app = Starlette(
        routes=[Route("/_sandlot/health", _health), *api.routes(), *transfer.routes(), *snapshots.routes(),
                *volumes.routes(), *envd_routes(service, max_upload_bytes=config.max_upload_bytes)],
        middleware=[Middleware(KeyAuth, store=store, preset_key=config.preset_api_key)],
        exception_handlers={E.SandlotError: _sandlot_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.snapshots = snapshot_store
    app.state.volumes = service.volumes
    app.state.transfer = Transfer(snapshot_store, layers, config.storage or str(config.home / "storage"))
    app.state.store = store
    app.state.config = config
    return app
