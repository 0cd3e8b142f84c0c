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

from .._exceptions import InvalidArgument, SandlotError

API_URL_ENV = "SANDLOT_API_URL"
API_KEY_ENV = "SANDLOT_API_KEY"
CA_FILE_ENV = "SANDLOT_CA_FILE"
DEFAULT_REQUEST_TIMEOUT = 60.0
EMBEDDED_ENTRY_POINT = "sandlot.embedded"  # group; its entry is a function returning an EmbeddedServer


class EmbeddedServer(Protocol):
    """A server started for this process: its URL and the API key it accepts."""

    @property
    def url(self) -> str: ...
    @property
    def api_key(self) -> str: ...


def check_timeout(value: float | None, name: str = "request_timeout") -> float | None:
    """A timeout in seconds as given (None passes through), or InvalidArgument."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidArgument(f"{name} must be a number of seconds >= 0 (0 = no limit), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ConnectionConfig:
    """One server: its base URL (control plane and sandbox traffic share it), API key, the limit
    of one request unless a call names its own (`request_timeout`; None = no limit), and a CA
    bundle (PEM) trusted besides the system's for a server with TLS (`ca_file`, e.g. the file of
    `sandlot ca` for a server with `--tls local-ca`)."""

    api_url: str
    api_key: str | None = None
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT
    ca_file: str | None = None

    def timeout(self, request_timeout: float | None = None) -> float | None:
        """The limit of one request: a call's own `request_timeout` (0 = none), else this config's
        (E2B's semantics)."""
        if check_timeout(request_timeout) is None:
            return self.request_timeout
        return request_timeout or None

    @classmethod
    def from_env(cls, api_url: str | None = None, api_key: str | None = None,
                 request_timeout: float | None = None,
                 ca_file: str | os.PathLike[str] | None = None) -> ConnectionConfig | None:
        """The configured server, or None when neither an argument nor $SANDLOT_API_URL names one."""
        url = api_url or os.environ.get(API_URL_ENV)
        if not url:
            return None
        return cls(api_url=url.rstrip("/"), api_key=api_key or os.environ.get(API_KEY_ENV) or None,
                   request_timeout=cls(url).timeout(request_timeout), ca_file=_ca_file(ca_file))

    @classmethod
    async def resolve(cls, api_url: str | None = None, api_key: str | None = None,
                      request_timeout: float | None = None,
                      ca_file: str | os.PathLike[str] | None = None) -> ConnectionConfig:
        """The configured server, else this process's embedded server (started on first use).
        `request_timeout` becomes the default of every request made through this config."""
        if config := cls.from_env(api_url, api_key, request_timeout, ca_file):
            return config
        check_timeout(request_timeout)
        server = await asyncio.to_thread(_embedded_server)  # blocks until it answers its health check
        return cls(api_url=server.url, api_key=server.api_key, request_timeout=cls(server.url).timeout(request_timeout))


def _ca_file(given: str | os.PathLike[str] | None) -> str | None:
    """The CA bundle to trust: the argument, else $SANDLOT_CA_FILE; an absolute path, so that one
    file is one cached TLS context (client/_http.py) whatever the working directory."""
    path = os.fspath(given) if given is not None else os.environ.get(CA_FILE_ENV)
    if not path:
        return None
    if not os.path.isfile(path):
        raise InvalidArgument(f"ca_file {path!r} (or ${CA_FILE_ENV}) is not a file: name the PEM file of the "
                              "server's CA (`sandlot ca` on its machine, or GET /ca.pem)")
    return os.path.abspath(path)


def _embedded_server() -> EmbeddedServer:
    found = sorted(entry_points(group=EMBEDDED_ENTRY_POINT), key=lambda ep: ep.name)
    if not found:
        raise SandlotError(f"no sandlot server is configured: pass api_url= or set ${API_URL_ENV} (and "
                           f"${API_KEY_ENV}), or install the sandlot server to run one in this process")
    start: Callable[[], EmbeddedServer] = found[0].load()
    return start()
