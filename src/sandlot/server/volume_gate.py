"""The gate of E2B's volume content API (`/volumecontent/{volume_id}/...`, server/volumes.py): the
volume's own token (`Authorization: Bearer`) is the credential, not an API key (auth.py's
Access.VOLUME). A wrong token and an unknown volume get the same 401. The gate notes the volume's
team for the audit trail and hands the volume to the handler (`gated_volume`).
"""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..volumes import Volume
from .request_info import request_info

_VOLUME = "sandlot.volume"


class VolumeGate:
    """ASGI middleware of one content route; the volume store is the app's (`app.state.volumes`)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        vol = scope["app"].state.volumes.by_id(scope["path_params"].get("volume_id", ""))
        auth = HTTPConnection(scope).headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if vol is None or not token or not hmac.compare_digest(token.encode(), vol.token.encode()):
            response = JSONResponse({"code": 401, "message": "invalid volume token"}, status_code=401)
            return await response(scope, receive, send)
        request_info(scope).team = vol.team
        scope[_VOLUME] = vol
        await self.app(scope, receive, send)


def gated_volume(request: HTTPConnection) -> Volume:
    """The volume whose token the request proved (set by VolumeGate)."""
    return request.scope[_VOLUME]
