"""Server settings: embedded defaults, overridable by environment variables and CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_home() -> Path:
    if env := os.environ.get("SANDLOT_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/sandlot")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "sandlot"


def _pool_templates() -> tuple[str, ...]:
    """SANDLOT_POOL_TEMPLATES (comma-separated), else `base` and `code-interpreter`; they need root
    to build, so an ordinary user's server keeps `host` warm instead."""
    if (env := os.environ.get("SANDLOT_POOL_TEMPLATES")) is not None:
        return tuple(t.strip() for t in env.split(",") if t.strip())
    return ("base", "code-interpreter") if os.geteuid() == 0 else ("host",)


def _env_bytes(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of bytes above 0, got {value!r}")
    return int(value)


@dataclass
class Config:
    home: Path = field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 3000
    runtime: str = "namespace"
    # the template of a create that names none; `serve` builds it (in view) before it listens
    default_template: str = field(default_factory=lambda: os.environ.get("SANDLOT_DEFAULT_TEMPLATE", "base"))
    default_timeout: int = 300
    max_timeout: int = 24 * 3600
    pool_size: int = field(default_factory=lambda: int(os.environ.get("SANDLOT_POOL_SIZE", "2")))
    # Warm pools: `base` needs root to build, so an ordinary user's server keeps `host` warm instead.
    pool_templates: tuple[str, ...] = field(default_factory=lambda: _pool_templates())
    preset_api_key: str | None = field(default_factory=lambda: os.environ.get("SANDLOT_API_KEY") or None)
    # One POST /files (all its files, after gunzip): past it, 413 and the upload is dropped.
    max_upload_bytes: int = field(default_factory=lambda: _env_bytes("SANDLOT_MAX_UPLOAD_BYTES", 1 << 30))
    # Output of one code run (stdout, stderr, results) past which the rest is dropped with a marker.
    max_output_bytes: int = field(default_factory=lambda: _env_bytes("SANDLOT_MAX_OUTPUT_BYTES", 16 << 20))
    # A clean stop kills every sandbox (nothing outlives a stopped server). --keep-sandboxes leaves
    # them running for a restart to adopt, as after kill -9.
    kill_on_shutdown: bool = True
    # issue 12: the domain create/info answer with, so get_host(port) is `{port}-{id}.{domain}`
    # (may carry the port: `localhost:3000`); None leaves it to the client's E2B_DOMAIN
    domain: str | None = field(default_factory=lambda: os.environ.get("SANDLOT_DOMAIN") or None)

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"
