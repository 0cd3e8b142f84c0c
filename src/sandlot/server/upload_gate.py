"""The gate of a template build's file upload (`PUT /templates/{template_id}/files/{hash}/upload`,
template_routes.py): the URL's signature is the credential, as E2B's presigned S3 URL is (the
official SDK sends no API key with it; auth.py's Access.UPLOAD). The signature is an HMAC of
(team, template id, files hash, expiry) under a key this server process holds (`app.state.
upload_key`); a bad or expired one and an unknown template get the same 401. The gate notes the
template's team for the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .request_info import request_info


def sign(key: bytes, team: str, template_id: str, files_hash: str, expires: int) -> str:
    return hmac.new(key, f"{team}\n{template_id}\n{files_hash}\n{expires}".encode(), hashlib.sha256).hexdigest()


class UploadGate:
    """ASGI middleware of the upload route."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope["app"].state
        params = scope["path_params"]
        tpl = state.custom_templates.by_id(params.get("template_id", ""))
        query = HTTPConnection(scope).query_params
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            expires = 0
        given = query.get("signature", "")
        if tpl is None or expires < time.time() or not hmac.compare_digest(
                given.encode(), sign(state.upload_key, tpl.team, tpl.id, params.get("hash", ""), expires).encode()):
            response = JSONResponse({"code": 401, "message": "the upload URL is invalid or has expired"},
                                    status_code=401)
            return await response(scope, receive, send)
        request_info(scope).team = tpl.team
        await self.app(scope, receive, send)
