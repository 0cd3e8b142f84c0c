"""Where the SDK finds its server: arguments, then the environment, then an embedded server."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

API_URL_ENV = "SANDLOT_API_URL"
API_KEY_ENV = "SANDLOT_API_KEY"
DEFAULT_REQUEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class ConnectionConfig:
    """One server: its base URL (control plane and sandbox traffic share it) and API key."""

    api_url: str
    api_key: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    @classmethod
    def from_env(cls, api_url: str | None = None, api_key: str | None = None) -> ConnectionConfig | None:
        """The configured server, or None when neither an argument nor $SANDLOT_API_URL names one."""
        url = api_url or os.environ.get(API_URL_ENV)
        if not url:
            return None
        return cls(api_url=url.rstrip("/"), api_key=api_key or os.environ.get(API_KEY_ENV) or None)

    @classmethod
    async def resolve(cls, api_url: str | None = None, api_key: str | None = None) -> ConnectionConfig:
        """The configured server, else this process's embedded server (started on first use)."""
        if config := cls.from_env(api_url, api_key):
            return config
        from ._embedded import embedded_server

        server = await asyncio.to_thread(embedded_server)  # blocks until it answers its health check
        return cls(api_url=server.url, api_key=server.api_key)
