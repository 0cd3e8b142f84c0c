"""The app's assembly (server/app.py, auth.py, openapi.py), in-process: every route declares who may
call it and a route that declares nothing is refused; the OpenAPI document and the routes name the
same operations."""

from __future__ import annotations

import contextlib
import logging

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from sandlot.server import (api, codebases, network_api, packages_api, ports, sessions, snapshots, template_routes,
                            transfer, volumes, workspaces)
from sandlot.server.app import build_app
from sandlot.server.auth import Access, ApiKeys, access_of, requires, secure
from sandlot.server.config import Config
from sandlot.server.openapi import OPERATIONS, document
from sandlot.server.store import Store

KEY = "e2b_" + "ab" * 20


@pytest.fixture
def keys(tmp_path):
    store = Store(tmp_path / "state.db")
    yield ApiKeys(store, KEY)
    store.close()


def _app(config_overrides: dict, tmp_path) -> Starlette:
    config = Config.from_env(home=tmp_path / "home", pool_size=0, pool_templates=(), api_key=KEY, **config_overrides)
    return build_app(config)


@contextlib.asynccontextmanager
async def serving(app: Starlette):
    """An in-process client of `app`, with its lifespan run (the runtime is closed after)."""
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sandlot.test") as http:
        http.app = app
        yield http


@pytest.fixture
async def client(tmp_path):
    async with serving(_app({}, tmp_path)) as http:
        yield http


async def _ok(request):
    return PlainTextResponse("ok")


async def test_a_route_that_declares_no_access_is_refused(keys, caplog):
    with caplog.at_level(logging.ERROR, logger="sandlot.auth"):
        routes = secure([*requires(Access.PUBLIC, [Route("/open", _ok)], keys, body=1024),
                         *requires(Access.API_KEY, [Route("/keyed", _ok)], keys, body=1024),
                         Route("/forgotten", _ok)], keys)
    assert "GET|HEAD /forgotten declares no access rule" in caplog.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette(routes=routes)),
                                 base_url="http://sandlot.test") as http:
        assert (await http.get("/open")).text == "ok"
        assert (await http.get("/keyed")).status_code == 401
        assert (await http.get("/keyed", headers={"X-API-KEY": KEY})).text == "ok"
        r = await http.get("/forgotten", headers={"X-API-KEY": KEY})  # no key opens an undeclared route
    assert r.status_code == 403 and r.json()["code"] == 403, r.text


async def test_a_websocket_reaches_no_route(keys):
    """WebSocket is the port proxy's alone (proxy.py, before the routes): one sent to a route, a
    Mount above all (Mounts match WebSocket scopes, whose rules the guard does not check), is
    refused before the route's app runs, whatever its access rule."""
    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])

    routes = secure([*requires(Access.PUBLIC, [Mount("/open", app=inner)], keys, body=1024),
                     *requires(Access.API_KEY, [Mount("/keyed", app=inner)], keys, body=None),
                     Mount("/forgotten", app=inner)], keys)
    app = Starlette(routes=routes)
    for path in ("/open/x", "/keyed/x", "/forgotten/x"):
        sent = []

        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            sent.append(message)

        await app({"type": "websocket", "path": path, "raw_path": path.encode(), "root_path": "", "scheme": "ws",
                   "query_string": b"", "headers": [(b"x-api-key", KEY.encode())], "subprotocols": []},
                  receive, send)
        assert sent == [{"type": "websocket.close", "code": 1008}], (path, sent)  # uvicorn answers 403
    assert reached == []


def test_declarations_are_checked(keys):
    with pytest.raises(TypeError, match="no sandbox gate"):
        requires(Access.SANDBOX, [Route("/x", _ok)], keys, body=None)
    with pytest.raises(TypeError, match="no volume gate"):
        requires(Access.VOLUME, [Route("/v", _ok)], keys, body=None)
    route = Route("/y", _ok)
    requires(Access.PUBLIC, [route], keys, body=None)
    with pytest.raises(TypeError, match="declared twice"):
        requires(Access.API_KEY, [route], keys, body=None)


async def test_every_route_of_the_app_declares_its_access(client):
    access = {(route.path, tuple(sorted(getattr(route, "methods", None) or ()))): access_of(route)
              for route in client.app.routes}
    assert None not in access.values(), access
    public = sorted(path for (path, _), a in access.items() if a is Access.PUBLIC)
    # the workload identity verifiers' key (identity.py) is public, as an OIDC issuer's must be
    assert public == ["/.well-known/jwks.json", "/.well-known/openid-configuration", "/_sandlot/health", "/ca.pem",
                      "/health", "/openapi.json"]
    keyed = {path for (path, _), a in access.items() if a is Access.API_KEY}
    own = [*sessions.routes(), *workspaces.routes(), *codebases.routes(), *codebases.upload_routes(),
           *snapshots.routes(), *transfer.routes(), *volumes.routes(), *template_routes.routes(), *ports.routes()]
    assert keyed == {r.path for r in [*api.routes(), *network_api.routes(), *packages_api.routes(), *own]} | {"/audit"}
    # a volume's content API: its own token, checked by the volume gate
    assert {path for (path, _), a in access.items() if a is Access.VOLUME} == {r.path for r in volumes.content_routes()}
    # a template build's file upload: the signed URL the files route gave, checked by the upload gate
    assert {path for (path, _), a in access.items() if a is Access.UPLOAD} == {
        "/templates/{template_id}/files/{hash}/upload"}
    # /metrics shows every team: admin keys only, by default
    assert [path for (path, _), a in access.items() if a is Access.ADMIN] == ["/metrics"]
    # sandbox traffic, authenticated by the sandbox's own token or signature
    assert {path for (path, _), a in access.items() if a is Access.SANDBOX} >= {
        "/files", "/envs", "/execute", "/contexts", "/process.Process", "/filesystem.Filesystem"}


async def test_metrics_need_a_key_unless_configured_public(tmp_path, client):
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})).status_code == 200
    async with serving(_app({"metrics_auth": "none"}, tmp_path / "public")) as public:
        assert (await public.get("/metrics")).status_code == 200


async def test_api_health_is_e2b_s(client):
    r = await client.get("/health")
    assert (r.status_code, r.text) == (200, "Health check successful")
    client.app.state.serving = False  # as while it starts or stops
    r = await client.get("/health")
    assert (r.status_code, r.text) == (503, "Service is unavailable")
    client.app.state.serving = True
    # sandbox traffic (routing header, or the access token older SDKs send) gets envd's answer
    assert (await client.get("/health", headers={"E2b-Sandbox-Id": "inosuch"})).status_code == 502
    assert (await client.get("/health", headers={"X-Access-Token": "t"})).status_code == 502  # none is running


async def test_openapi_document_and_routes_name_the_same_operations(client):
    doc = (await client.get("/openapi.json")).json()
    validate(doc)
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    served = {(m.lower(), route.path) for route in client.app.routes if access_of(route) is not Access.SANDBOX
              for m in route.methods if m != "HEAD"}
    assert documented == served
    assert set(OPERATIONS) == served, "OPERATIONS names operations no route serves, or misses some"
    keyed = doc["paths"]["/sandboxes/{sandbox_id}"]["delete"]
    assert keyed["security"] and keyed["parameters"][0]["name"] == "sandbox_id"
    assert doc["paths"]["/health"]["get"]["security"] == []
    create = doc["paths"]["/v2/sandboxes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == {"$ref": "#/components/schemas/NewSandbox"}
    assert "templateID" in doc["components"]["schemas"]["NewSandbox"]["properties"]


def test_undocumented_route_shows_up_and_fails_the_check(keys):
    routes = requires(Access.API_KEY, [Route("/sandboxes/{sandbox_id}/brand-new", _ok, methods=["POST"])], keys,
                      body=None)
    doc = document(routes)
    assert list(doc["paths"]) == ["/sandboxes/{sandbox_id}/brand-new"]  # listed, with its docstring's summary
    assert ("post", "/sandboxes/{sandbox_id}/brand-new") not in OPERATIONS
