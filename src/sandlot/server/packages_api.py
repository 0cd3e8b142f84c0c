"""sandlot's own routes for a sandbox's Python packages: `/sandboxes/{id}/packages` (GET list, POST
install) and `.../packages/uninstall` (packages.py: wheels fetched on the host, installed offline
inside)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from .sandbox_views import running
from .bodies import JsonBody, read_model
from .packages import PackageManager


class InstallIn(JsonBody):
    packages: list[str] | None = None
    requirements: str | None = None  # path of a requirements.txt inside the sandbox
    upgrade: bool = False


class UninstallIn(JsonBody):
    packages: list[str]


def _packages(request: Request) -> PackageManager:
    return request.app.state.packages  # built with the app (app.py)


def _packages_json(packages) -> list[dict]:
    return [p.json() for p in packages]


async def list_packages(request: Request) -> Response:
    return JSONResponse(_packages_json(await _packages(request).list(running(request))))


async def install_packages(request: Request) -> Response:
    body = await read_model(request, InstallIn)
    if (body.packages is None) == (body.requirements is None):
        raise E.InvalidArgument("give either packages or requirements")
    live, packages = running(request), _packages(request)
    if body.requirements is not None:
        installed = await packages.install_requirements(live, body.requirements, upgrade=body.upgrade)
    else:
        installed = await packages.install(live, body.packages, upgrade=body.upgrade)
    return JSONResponse({"installed": _packages_json(installed)})


async def uninstall_packages(request: Request) -> Response:
    body = await read_model(request, UninstallIn)
    removed = await _packages(request).uninstall(running(request), body.packages)
    return JSONResponse({"uninstalled": _packages_json(removed)})


def routes() -> list[Route]:
    sid = "/sandboxes/{sandbox_id}"
    return [
        Route(sid + "/packages", list_packages, methods=["GET"]),
        Route(sid + "/packages", install_packages, methods=["POST"]),
        Route(sid + "/packages/uninstall", uninstall_packages, methods=["POST"]),
    ]
