"""Who may call each route: declared per route when the app is assembled (app.py), default deny.

`requires(access, routes, body=...)` wraps each route in a guard that applies its rule and bounds
its request body (bodies.py; None: the route streams and bounds its body itself); `secure(routes)`
then refuses (403) every route that declared none, so a route added without a rule is closed, not
open. Rules:

    PUBLIC    anyone: liveness and the API description
    API_KEY   the control plane: a valid, unrevoked API key (`X-API-KEY`, or `Authorization: Bearer`)
              of an existing team
    ADMIN     an admin API key (teams.py); another key gets 403
    SANDBOX   sandbox traffic (envd, the code interpreter): the sandbox's access token or a signed
              URL, checked by the envd gate the route carries (envd/auth.py); refused at assembly
              if the route has none
    VOLUME    a volume's content API: the volume's own token, checked by the volume gate the route
              carries (volume_gate.py); refused at assembly if the route has none
    UPLOAD    a template build's file upload: the signed URL the API gave, checked by the upload gate
              the route carries (upload_gate.py); refused at assembly if the route has none

Tenancy: the guard of an API_KEY or ADMIN route resolves the caller (key id, team, admin) into the
request's RequestInfo (`caller(request)` reads it), and checks every resource the route's path
names by a parameter registered with `ApiKeys.owned` (`{sandbox_id}` by the app): one of another
team is answered 404 with the very body an unknown one gets, before the handler runs. A route
added later under `/sandboxes/{sandbox_id}/...` is team-checked without doing anything.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._exceptions import AuthenticationError
from .bodies import BodyLimit
from .envd.routing import SandboxGate
from .request_info import request_info
from .store import Store, hash_key
from .teams import DEFAULT_TEAM, Caller
from .upload_gate import UploadGate
from .volume_gate import VolumeGate

log = logging.getLogger("sandlot.auth")

PRESET_KEY_ID = "preset"  # the key id shown in logs and metrics for SANDLOT_API_KEY


class Access(enum.Enum):
    PUBLIC = "public"
    API_KEY = "api-key"
    ADMIN = "admin"
    SANDBOX = "sandbox"
    VOLUME = "volume"
    UPLOAD = "upload"


@dataclass(frozen=True)
class Owned:
    """A kind of resource a path parameter names: the team owning one (None: unknown), and the noun
    of its not-found answer (`sandbox "ID" not found`, as the handlers word it)."""

    team_of: Callable[[str], str | None]
    noun: str


class ApiKeys:
    """Checks API keys: the stored ones, and the preset one (SANDLOT_API_KEY, an admin key of the
    default team) if set; and which team owns what a route's path names."""

    def __init__(self, store: Store, preset_key: str | None):
        self.store = store
        self.preset_hash = hash_key(preset_key) if preset_key else None
        self.owners: dict[str, Owned] = {}  # path parameter -> the resources it names

    def caller(self, key: str) -> Caller | None:
        """Who holds `key`; None for an unknown or revoked one (or one whose team was deleted)."""
        if self.preset_hash and hmac.compare_digest(hash_key(key), self.preset_hash):
            return Caller(PRESET_KEY_ID, DEFAULT_TEAM, admin=True)
        return self.store.caller(key)

    def owned(self, param: str, team_of: Callable[[str], str | None], noun: str) -> None:
        """Routes whose path has `{param}` serve only the team owning the resource it names."""
        self.owners[param] = Owned(team_of, noun)

    def foreign(self, scope: Scope, caller: Caller) -> tuple[str, str, str] | None:
        """(noun, value, owner) of a resource the path names that another team owns, if any."""
        for param, value in scope.get("path_params", {}).items():
            if (owned := self.owners.get(param)) is not None:
                owner = owned.team_of(value)
                if owner is not None and owner != caller.team:
                    return owned.noun, value, owner
        return None


def caller(request: HTTPConnection) -> Caller:
    """The caller of a request that passed an API_KEY or ADMIN rule."""
    info = request_info(request.scope)
    if info.team is None or info.key_id is None:
        raise AuthenticationError("missing API key")  # a route without a key rule asked: a bug, closed
    return Caller(info.key_id, info.team, info.admin)


def presented_key(scope: Scope) -> str:
    headers = dict(scope["headers"])
    key = headers.get(b"x-api-key", b"").decode("latin-1")
    if not key:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    return key


class Guard:
    """The access rule and body bound of one route (access None: the route declared none and is
    refused)."""

    def __init__(self, app: ASGIApp, access: Access | None, keys: ApiKeys, name: str, body: int | None = None):
        self.route_app, self.access, self.keys, self.name, self.body = app, access, keys, name, body
        self.app = BodyLimit(app, body) if body is not None else app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # A WebSocket (a Mount matches one): no route serves it, and the rules below are for
            # HTTP; the port proxy (proxy.py), in front of the routes, is its only server.
            return await send({"type": "websocket.close", "code": 1008})  # answered 403
        if self.access is None:
            return await _refuse(403, f"{self.name} declares no access rule: refused", scope, receive, send)
        if self.access in (Access.API_KEY, Access.ADMIN):
            key = presented_key(scope)
            who = self.keys.caller(key) if key else None
            if who is None:
                message = "invalid API key" if key else "missing API key"
                return await _refuse(401, message, scope, receive, send)
            info = request_info(scope)
            info.key_id, info.team, info.admin = who.key_id, who.team, who.admin
            if self.access is Access.ADMIN and not who.admin:
                return await _refuse(403, "this needs an admin API key", scope, receive, send)
            if (hidden := self.keys.foreign(scope, who)) is not None:
                noun, value, info.foreign_team = hidden
                return await _refuse(404, f"{noun} \"{value}\" not found", scope, receive, send)
        await self.app(scope, receive, send)


def requires(access: Access, routes: Iterable[BaseRoute], keys: ApiKeys, *, body: int | None) -> list[BaseRoute]:
    """Declare `access` for each of `routes`, whose request bodies may hold `body` bytes."""
    routes = list(routes)
    for route in routes:
        if isinstance(_app(route), Guard):
            raise TypeError(f"{_name(route)} is declared twice")
        if access is Access.SANDBOX and not isinstance(_app(route), SandboxGate):
            raise TypeError(f"{_name(route)} is declared sandbox traffic but carries no sandbox gate")
        if access is Access.VOLUME and not isinstance(_app(route), VolumeGate):
            raise TypeError(f"{_name(route)} is declared volume content but carries no volume gate")
        if access is Access.UPLOAD and not isinstance(_app(route), UploadGate):
            raise TypeError(f"{_name(route)} is declared a signed upload but carries no upload gate")
        _set_app(route, Guard(_app(route), access, keys, _name(route), body))
    return routes


def secure(routes: Iterable[BaseRoute], keys: ApiKeys) -> list[BaseRoute]:
    """Every route as declared; one that declared nothing is refused (and said so in the log)."""
    routes = list(routes)
    for route in routes:
        if not isinstance(_app(route), Guard):
            log.error("%s declares no access rule: every request to it is refused", _name(route))
            _set_app(route, Guard(_app(route), None, keys, _name(route)))
    return routes


def access_of(route: BaseRoute) -> Access | None:
    app = _app(route)
    return app.access if isinstance(app, Guard) else None


def _app(route: BaseRoute) -> ASGIApp:
    if not isinstance(route, Route | Mount):
        raise TypeError(f"cannot guard a {type(route).__name__}")
    return route.app


def _set_app(route: BaseRoute, app: ASGIApp) -> None:
    route.app = app  # what Route.handle / Mount.handle call once the path and method matched


def _name(route: BaseRoute) -> str:
    if isinstance(route, Route):
        return f"{'|'.join(sorted(route.methods or []))} {route.path}"
    return f"{route.path}/*"


async def _refuse(status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"code": status, "message": message}, status_code=status)(scope, receive, send)
