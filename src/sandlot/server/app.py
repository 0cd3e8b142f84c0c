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
from . import api
from .auth import KeyAuth
from .config import Config
from .envd import envd_routes
from .envd.code import BrokenOff
from .ports import Exposures
from .ports import routes as port_routes
from .proxy import PortProxy
from .service import SandboxService
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
    runtime = make_runtime(config.home)  # namespace as root, rootless otherwise
    templates = TemplateStore(config.home)
    service = SandboxService(config, store, runtime, templates)
    exposures = Exposures(config.home)  # preview URLs' signing key (server/proxy.py)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # uvicorn logs each exception out of the app with its traceback: not the deliberate ones
        logging.getLogger("uvicorn.error").addFilter(_not_broken_off)
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()
            store.close()

    app = Starlette(
        routes=[Route("/_sandlot/health", _health), *api.routes(), *port_routes(),
                *envd_routes(service, max_upload_bytes=config.max_upload_bytes)],
        # the port proxy first: requests for a sandbox's port carry no API key (issue 12)
        middleware=[Middleware(PortProxy, service=service, exposures=exposures, domain=config.domain),
                    Middleware(KeyAuth, store=store, preset_key=config.preset_api_key)],
        exception_handlers={E.SandlotError: _sandlot_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.store = store
    app.state.config = config
    app.state.exposures = exposures
    return app
