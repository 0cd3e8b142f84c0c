"""Where the SDK finds its server: arguments, then the environment, then an embedded server.

The embedded server is not part of the SDK: it is whatever the `sandlot.embedded` entry point
names (the sandlot package points it at `sandlot.embedded:embedded_server`). Found by name, not
imported, so `client/` depends on no server code and would work shipped on its own, with a clear
error when no server is installed to embed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol

from .._exceptions import SandlotError

API_URL_ENV = "SANDLOT_API_URL"
API_KEY_ENV = "SANDLOT_API_KEY"
DEFAULT_REQUEST_TIMEOUT = 60.0
EMBEDDED_ENTRY_POINT = "sandlot.embedded"  # group; its entry is a function returning an EmbeddedServer


class EmbeddedServer(Protocol):
    """A server started for this process: its URL and the API key it accepts."""

    @property
    def url(self) -> str: ...
    @property
    def api_key(self) -> str: ...


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
        server = await asyncio.to_thread(_embedded_server)  # blocks until it answers its health check
        return cls(api_url=server.url, api_key=server.api_key)


def _embedded_server() -> EmbeddedServer:
    found = sorted(entry_points(group=EMBEDDED_ENTRY_POINT), key=lambda ep: ep.name)
    if not found:
        raise SandlotError(f"no sandlot server is configured: pass api_url= or set ${API_URL_ENV} (and "
                           f"${API_KEY_ENV}), or install the sandlot server to run one in this process")
    start: Callable[[], EmbeddedServer] = found[0].load()
    return start()
