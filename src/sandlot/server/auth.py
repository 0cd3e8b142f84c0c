"""API-key authentication for the control plane (`X-API-KEY`, or `Authorization: Bearer KEY`).

The envd and code-interpreter routes authenticate with per-sandbox access tokens instead (envd/).
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from .store import Store, hash_key

CONTROL_PLANE_PREFIXES = ("/sandboxes", "/v2/", "/templates", "/snapshots", "/volumes", "/_sandlot/api")


class KeyAuth:
    """Pure ASGI middleware: control-plane paths need a valid, unrevoked API key."""

    def __init__(self, app: ASGIApp, store: Store, preset_key: str | None):
        self.app = app
        self.store = store
        self.preset_hash = hash_key(preset_key) if preset_key else None

    def valid(self, key: str) -> bool:
        if self.preset_hash and hmac.compare_digest(hash_key(key), self.preset_hash):
            return True
        return self.store.key_is_valid(key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CONTROL_PLANE_PREFIXES):
            headers = dict(scope["headers"])
            key = headers.get(b"x-api-key", b"").decode("latin-1")
            if not key:
                auth = headers.get(b"authorization", b"").decode("latin-1")
                if auth.lower().startswith("bearer "):
                    key = auth[7:].strip()
            if not key or not self.valid(key):
                from starlette.responses import JSONResponse

                message = "missing API key" if not key else "invalid API key"
                await JSONResponse({"code": 401, "message": message}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)
