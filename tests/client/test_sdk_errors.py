"""The error boundary: every failure of the layers below (httpx, pyqwest, connectrpc) reaches the
caller as a sandlot exception. Driven against a scripted HTTP server and a closed port, no sandbox
needed; test_sandbox.py and friends cover the real server's errors."""

from __future__ import annotations

import asyncio
import builtins
import threading
import time

import httpx
import pytest
import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import sandlot
from sandlot import (
    AsyncSandbox, AuthenticationError, FileNotFound, InvalidArgument, NotFound, Sandbox, SandboxNotRunning,
    SandlotError,
)
from sandlot.client._http import _PlainHTTPError, translate
from sdk_support import maybe
from support import free_port

SANDBOX_JSON = {"sandboxID": "sbx1", "templateID": "base", "clientID": "x", "envdVersion": "0.6.4",
                "envdAccessToken": "tok"}


def _connect_error(code: str, status: int) -> JSONResponse:
    return JSONResponse({"code": code, "message": f"scripted {code}"}, status_code=status)


async def connect_sandbox(request: Request) -> Response:
    if request.path_params["sid"] == "sbx1":
        return JSONResponse(SANDBOX_JSON)
    return JSONResponse({"code": 404, "message": "sandbox not found"}, status_code=404)


SLOW = 1.0  # seconds a "slow" route takes to answer


async def slow_info(request: Request) -> Response:
    await asyncio.sleep(SLOW)
    return JSONResponse({"code": 404, "message": "no such sandbox"}, status_code=404)


async def files(request: Request) -> Response:
    path = request.query_params.get("path", "")
    if path == "/slow":
        await asyncio.sleep(SLOW)
    if path == "/gone":
        return JSONResponse({"code": 502, "message": "The sandbox was not found"}, status_code=502)
    if path == "/text-error":
        return PlainTextResponse("upstream exploded", status_code=500)
    return JSONResponse({"code": 404, "message": f"path '{path}' does not exist"}, status_code=404)


async def stat(request: Request) -> Response:
    path = (await request.json()).get("path")
    if path == "/slow":
        await asyncio.sleep(SLOW)
    if path == "/denied":
        return JSONResponse({"code": 401, "message": "unauthorized access"}, status_code=401)  # not Connect
    return _connect_error("not_found", 404)


async def start(request: Request) -> Response:
    if b"slow" in await request.body():
        await asyncio.sleep(SLOW)
    return _connect_error("permission_denied", 403)


BUILD_STEPS = iter([])  # progress the scripted server reports for a create while "building"


async def create(request: Request) -> Response:
    if request.headers.get("X-API-KEY") == "building":
        progress = next(BUILD_STEPS, None)
        if progress is None:
            return JSONResponse(SANDBOX_JSON, status_code=201)
        return JSONResponse({"code": 503, "message": f"template code-interpreter is being built ({progress} %)",
                             "template": "code-interpreter", "progress": progress, "step": "installing"},
                            status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"code": 401, "message": "invalid API key"}, status_code=401)


APP = Starlette(routes=[
    Route("/v2/sandboxes", create, methods=["POST"]),
    Route("/v2/sandboxes", lambda r: JSONResponse({"code": 401, "message": "invalid API key"}, status_code=401),
          methods=["GET"]),
    Route("/v2/sandboxes/{sid}/connect", connect_sandbox, methods=["POST"]),
    Route("/sandboxes/slow", slow_info, methods=["GET"]),
    Route("/sandboxes/{sid}", lambda r: JSONResponse({"code": 404, "message": "no such sandbox"}, status_code=404),
          methods=["GET", "DELETE"]),
    Route("/sandboxes/{sid}/timeout", lambda r: PlainTextResponse("bad gateway", status_code=400),
          methods=["POST"]),
    Route("/health", lambda r: JSONResponse({"code": 502, "message": "The sandbox was not found"}, status_code=502)),
    Route("/files", files, methods=["GET", "POST"]),
    Route("/filesystem.Filesystem/Stat", stat, methods=["POST"]),
    Route("/filesystem.Filesystem/MakeDir", lambda r: _connect_error("invalid_argument", 400), methods=["POST"]),
    Route("/process.Process/List", lambda r: JSONResponse({"code": 502, "message": "The sandbox was not found"},
                                                          status_code=502), methods=["POST"]),
    Route("/process.Process/Start", start, methods=["POST"]),
])


@pytest.fixture(scope="module")
def scripted():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(APP, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def cls(surface):
    return Sandbox if surface == "sync" else AsyncSandbox


async def test_control_plane_errors(scripted, surface):
    S = cls(surface)
    with pytest.raises(AuthenticationError, match="invalid API key"):
        await maybe(S.create(api_url=scripted, api_key="wrong"))
    with pytest.raises(NotFound, match="sandbox not found"):
        await maybe(S.connect("nope", api_url=scripted, api_key="k"))
    assert await maybe(S.kill("nope", api_url=scripted, api_key="k")) is False  # 404 on kill is an answer
    with pytest.raises(NotFound):
        await maybe(S.get_info("nope", api_url=scripted, api_key="k"))
    with pytest.raises(InvalidArgument, match="bad gateway"):  # plain-text error bodies are kept
        await maybe(S.set_timeout("nope", 10, api_url=scripted, api_key="k"))


async def test_envd_errors(scripted, surface):
    sandbox = await maybe(cls(surface).connect("sbx1", api_url=scripted, api_key="k"))
    with pytest.raises(FileNotFound, match="does not exist"):
        await maybe(sandbox.files.read("/missing"))
    with pytest.raises(FileNotFound):
        await maybe(sandbox.files.read("/missing", format="stream"))
    with pytest.raises(SandboxNotRunning):
        await maybe(sandbox.files.write("/gone", b"x"))
    with pytest.raises(SandlotError, match="upstream exploded"):
        await maybe(sandbox.files.read("/text-error", format="bytes"))
    assert await maybe(sandbox.is_running()) is False
    # RPCs: Connect errors by code, plain HTTP errors by status
    with pytest.raises(FileNotFound, match="scripted not_found"):
        await maybe(sandbox.files.get_info("/x"))
    assert await maybe(sandbox.files.exists("/x")) is False
    with pytest.raises(AuthenticationError, match="unauthorized"):
        await maybe(sandbox.files.get_info("/denied"))
    with pytest.raises(InvalidArgument):
        await maybe(sandbox.files.make_dir("/x"))
    with pytest.raises(SandboxNotRunning):
        await maybe(sandbox.commands.list())
    with pytest.raises(sandlot.PermissionDenied):  # a stream refused before it starts
        await maybe(sandbox.commands.run("true"))


async def test_create_waits_for_a_template_build_and_says_how_far_it_got(scripted, surface, monkeypatch,
                                                                          caplog):
    global BUILD_STEPS
    BUILD_STEPS = iter([5, 12, 14, 60])
    monkeypatch.setattr(sandlot.client._sandbox, "BUILD_POLL", 0.01)
    with caplog.at_level("WARNING", logger="sandlot"):
        sandbox = await maybe(cls(surface).create("code-interpreter", api_url=scripted, api_key="building"))
    assert sandbox.sandbox_id == "sbx1"
    said = [r.getMessage() for r in caplog.records if r.name == "sandlot"]
    assert said == [f"waiting for template code-interpreter to be built on the server (first use only): {p} %, "
                    "installing" for p in (5, 12, 60)]  # a line per 10 %, not per answer
    # without the SDK's waiting, what a client sees: the error says what happens and what to do
    from sandlot.client._http import error_for_answer
    err = error_for_answer(503, b'{"code": 503, "message": "being built", "template": "t", "progress": 7}')
    assert isinstance(err, sandlot.TemplateBuilding) and err.details["progress"] == 7


async def test_request_timeout(scripted, surface):
    """Every call takes `request_timeout` (E2B's name and meaning); what it raises is sandlot's
    timeout error, which is also the builtin TimeoutError."""
    S = cls(surface)
    started = time.monotonic()
    with pytest.raises(builtins.TimeoutError) as info:
        await maybe(S.get_info("slow", api_url=scripted, api_key="k", request_timeout=0.2))
    assert isinstance(info.value, sandlot.SandlotTimeoutError)
    sandbox = await maybe(S.connect("sbx1", api_url=scripted, api_key="k"))
    for call in (lambda: sandbox.files.read("/slow", request_timeout=0.2),       # envd HTTP
                 lambda: sandbox.files.get_info("/slow", request_timeout=0.2),   # unary RPC
                 lambda: sandbox.commands.run("slow", request_timeout=0.2)):     # a stream's start
        with pytest.raises(sandlot.SandlotTimeoutError):
            await maybe(call())
    assert time.monotonic() - started < 4 * SLOW - 0.5, "a request_timeout did not cut a call short"
    # the one given to connect() (or create()) is the sandbox's default; a call's own wins, 0 = none
    quick = await maybe(S.connect("sbx1", api_url=scripted, api_key="k", request_timeout=0.2))
    with pytest.raises(sandlot.SandlotTimeoutError):
        await maybe(quick.files.get_info("/slow"))
    with pytest.raises(FileNotFound):
        await maybe(quick.files.read("/slow", request_timeout=0))
    with pytest.raises(InvalidArgument, match="request_timeout"):
        await maybe(sandbox.files.read("/a", request_timeout=-1))


async def test_unreachable_server(surface):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    S = cls(surface)
    with pytest.raises(SandlotError, match="cannot reach"):
        await maybe(S.create(api_url=url, api_key="k"))
    with pytest.raises(SandlotError, match="cannot reach"):
        await maybe(S.kill("x", api_url=url, api_key="k"))
    with pytest.raises(SandlotError, match="cannot reach"):
        await maybe(S.list(api_url=url, api_key="k").next_items())
    impl = AsyncSandbox("sbx1", sandlot.client._http.Transport(sandlot.client._config.ConnectionConfig(url)), "t")
    sandbox = impl if surface == "async" else Sandbox._wrap(impl)
    for call in (lambda: sandbox.files.read("/a"), lambda: sandbox.files.write("/a", "x"),
                 lambda: sandbox.files.list("/"), lambda: sandbox.commands.run("true"),
                 lambda: sandbox.commands.kill(1), lambda: sandbox.is_running()):
        with pytest.raises(SandlotError) as info:
            await maybe(call())
        assert type(info.value).__module__ == "sandlot._exceptions"


@pytest.mark.parametrize("raised, expected", [
    (httpx.ConnectError("refused"), SandlotError),
    (httpx.ReadTimeout("slow"), sandlot.TimeoutError),
    (httpx.RemoteProtocolError("garbage"), SandlotError),
    (httpx.InvalidURL("bad"), SandlotError),
    (ConnectError(Code.NOT_FOUND, "x"), NotFound),
    (ConnectError(Code.DEADLINE_EXCEEDED, "x"), sandlot.TimeoutError),
    (ConnectError(Code.UNAVAILABLE, "x"), SandlotError),
    (ConnectError(Code.RESOURCE_EXHAUSTED, "x"), sandlot.ResourceExhausted),
    (ConnectError(Code.INTERNAL, "x"), SandlotError),
    (_PlainHTTPError(502, b"The sandbox was not found"), SandboxNotRunning),
    (_PlainHTTPError(507, b"no space"), sandlot.ResourceExhausted),
    (_PlainHTTPError(418, b"teapot"), SandlotError),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__)
def test_translate_maps_lower_layer_errors(raised, expected):
    with pytest.raises(SandlotError) as info:
        with translate():
            raise raised
    assert type(info.value) is expected
    assert info.value.__cause__ is raised  # the original stays attached for debugging


def test_translate_refines_not_found_and_keeps_cancellation():
    with pytest.raises(FileNotFound):
        with translate(FileNotFound):
            raise ConnectError(Code.NOT_FOUND, "x")
    cancelled = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        with translate():
            try:
                raise cancelled
            except asyncio.CancelledError as e:
                raise ConnectError(Code.CANCELED, "Request was cancelled") from e
