"""The sandbox-ports API (behind the API key; the proxy itself is proxy.py): preview URLs, and
waiting for a port to open.

Preview URLs: signed, expiring links to one port of a sandbox, for sharing (Cloudflare's
`exposePort`), valid even where the sandbox's traffic is private. A URL is
`http://{port}-{id}-{token}.{domain}` (https with TLS on); its token is the expiry (8 hex digits) and an HMAC over
sandbox, port, expiry and the exposure's nonce, under a key of this server's (`<home>/proxy.key`).
Exposing a port again makes a new nonce (the old URL stops working); unexposing removes it. The
exposures live in the sandbox's record, so a restart keeps them. Routes: POST/DELETE
/sandboxes/{id}/ports/{port}/expose, GET /sandboxes/{id}/ports.

Waiting: POST /sandboxes/{id}/ports/{port}/wait {"timeout": s} answers 204 once something in the
sandbox accepts connections on the port (loopback included), 504 at the timeout. The server
tries a connection inside the sandbox's namespace every 25 ms; the client does not poll.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from .proxy import ENVD_PORTS, connect_into
from .request_info import note

MAX_EXPOSE_TTL = 7 * 24 * 3600
_TOKEN = re.compile(r"^[0-9a-f]{8}[a-z2-7]{20}$")


class Exposures:
    """Signed, expiring preview URLs (`{port}-{id}-{token}.{domain}`): a token is an expiry and an
    HMAC over sandbox, port, expiry and the exposure's nonce, under a key of this server's."""

    def __init__(self, home: Path):
        path = home / "proxy.key"
        try:
            self.key = path.read_bytes()
        except FileNotFoundError:
            self.key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key)

    def token(self, sandbox_id: str, port: int, expires: int, nonce: str) -> str:
        mac = hmac.new(self.key, f"{sandbox_id}:{port}:{expires}:{nonce}".encode(), hashlib.sha256).digest()
        return f"{expires:08x}" + base64.b32encode(mac).decode().lower()[:20]

    def valid(self, record, port: int, token: str) -> bool:
        exposed = ((record.network or {}).get("ingress") or {}).get("exposed", {}).get(str(port))
        if not exposed or not _TOKEN.match(token) or int(token[:8], 16) != exposed["expires"] or exposed["expires"] < time.time():
            return False
        return hmac.compare_digest(self.token(record.id, port, exposed["expires"], exposed["nonce"]), token)


def _port(request: Request) -> int:
    try:
        port = int(request.path_params["port"])
    except ValueError:
        port = 0
    if not 1 <= port <= 65535 or port in ENVD_PORTS:
        raise E.InvalidArgument(f"port must be 1-65535 and not envd's (49983, 49999), got {request.path_params['port']}")
    return port


def _exposed(record) -> dict:
    return ((record.network or {}).get("ingress") or {}).get("exposed", {})


def _preview(request: Request, record, port: int, entry: dict) -> dict:
    config = request.app.state.config
    domain = config.domain or f"localhost:{config.port}"
    token = request.app.state.exposures.token(record.id, port, entry["expires"], entry["nonce"])
    return {"port": port, "url": f"{config.scheme}://{port}-{record.id}-{token}.{domain}",
            "expiresAt": entry["expires"]}


async def expose(request: Request) -> Response:
    svc = request.app.state.service
    record = svc.record(request.path_params["sandbox_id"])
    port = _port(request)
    raw = await request.body()
    try:
        ttl = json.loads(raw).get("ttl", 3600) if raw.strip() else 3600
    except (ValueError, AttributeError):
        raise E.InvalidArgument("request body must be a JSON object") from None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_EXPOSE_TTL:
        raise E.InvalidArgument(f"ttl must be a whole number of seconds between 1 and {MAX_EXPOSE_TTL}")
    entry = {"nonce": secrets.token_hex(8), "expires": int(time.time()) + ttl}
    svc.networks.set_ingress(record.id, exposed={**_exposed(record), str(port): entry})
    note(port=port, ttl=ttl)  # the audit row (never the URL's token)
    return JSONResponse(_preview(request, record, port, entry), status_code=201)


async def unexpose(request: Request) -> Response:
    svc = request.app.state.service
    record = svc.record(request.path_params["sandbox_id"])
    port = _port(request)
    exposed = dict(_exposed(record))
    if exposed.pop(str(port), None) is None:
        raise E.NotFound(f"port {port} is not exposed")
    svc.networks.set_ingress(record.id, exposed=exposed)
    note(port=port)
    return Response(status_code=204)


async def list_exposed(request: Request) -> Response:
    record = request.app.state.service.record(request.path_params["sandbox_id"])
    now = time.time()
    return JSONResponse([_preview(request, record, int(port), entry)
                         for port, entry in sorted(_exposed(record).items(), key=lambda kv: int(kv[0]))
                         if entry["expires"] > now])


async def wait(request: Request) -> Response:
    svc = request.app.state.service
    port = _port(request)
    raw = await request.body()
    try:
        timeout = json.loads(raw).get("timeout", 30) if raw.strip() else 30
    except (ValueError, AttributeError):
        raise E.InvalidArgument("request body must be a JSON object") from None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 3600:
        raise E.InvalidArgument("timeout must be a number of seconds between 0 and 3600")
    if not hasattr(svc.runtime, "port_socket"):
        raise E.Unsupported("waiting for a port needs the namespace runtime (a server run as root)")
    deadline = time.monotonic() + timeout
    while True:
        live = svc.get_running(request.path_params["sandbox_id"])
        if live is None:
            svc.record(request.path_params["sandbox_id"])  # NotFound if unknown
            raise E.SandboxNotRunning(f"sandbox \"{request.path_params['sandbox_id']}\" is not running")
        try:
            (await connect_into(svc.runtime, live.rt, port, timeout=1)).close()
            return Response(status_code=204)
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise E.TimeoutError(f"nothing listens on port {port} after {timeout} s")
        await asyncio.sleep(0.025)


def routes() -> list[Route]:
    base = "/sandboxes/{sandbox_id}/ports"
    return [
        Route(base + "/{port}/wait", wait, methods=["POST"]),
        Route(base + "/{port}/expose", expose, methods=["POST"]),
        Route(base + "/{port}/expose", unexpose, methods=["DELETE"]),
        Route(base, list_exposed, methods=["GET"]),
    ]
