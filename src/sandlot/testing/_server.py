"""A sandlot server for a test session: `serve()`.

It is the SDK's embedded server (sandlot/embedded.py: a `sandlot serve` child on a free loopback
port, a private state directory whose built templates are shared with the machine-wide one, a
watchdog that stops it if this process dies) started on purpose, with an E2B-shaped API key so the
official SDKs accept it, and warm pools only for the templates the tests asked for.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import embedded


@dataclass(frozen=True)
class SandlotServer:
    """A running test server: where it listens, its API key, and the environments pointing SDKs at it."""

    url: str
    api_key: str
    home: Path  # its private state directory (gone once the server stops)
    log: Path

    @property
    def e2b_env(self) -> dict[str, str]:
        """For the official `e2b` and `e2b-code-interpreter` SDKs."""
        return {"E2B_API_URL": self.url, "E2B_SANDBOX_URL": self.url, "E2B_API_KEY": self.api_key,
                "E2B_DOMAIN": "localhost"}

    @property
    def env(self) -> dict[str, str]:
        """For both SDKs: the official ones and sandlot's own (SANDLOT_API_URL, SANDLOT_API_KEY)."""
        return {**self.e2b_env, "SANDLOT_API_URL": self.url, "SANDLOT_API_KEY": self.api_key}


def default_templates() -> tuple[str, ...]:
    """`base` as root; an ordinary user's server runs the `host` template (base needs root to build)."""
    return ("base",) if os.geteuid() == 0 else ("host",)


@contextmanager
def serve(templates: Sequence[str] | None = None, pool_size: int = 1) -> Iterator[SandlotServer]:
    """Start a server, yield it, stop it (its sandboxes are killed, its state directory removed).

    `templates` are built first if missing or stale (once per machine: later runs reuse them) and
    kept warm, `pool_size` sandboxes each. Needs what `sandlot serve` needs (root, or user namespaces
    for the rootless runtime).
    """
    templates = tuple(templates or default_templates())
    running = embedded.start("e2b_" + secrets.token_hex(20), build=templates, pooled=templates, pool_size=pool_size)
    try:
        yield SandlotServer(running.url, running.api_key, running.home, running.log)
    finally:
        running.stop()
