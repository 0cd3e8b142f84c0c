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
    max_upload_bytes: int = 1024 * 1024 * 1024
    # Output of one code run (stdout, stderr, results) past which the rest is dropped with a marker.
    max_output_bytes: int = field(default_factory=lambda: int(os.environ.get("SANDLOT_MAX_OUTPUT_BYTES", 16 << 20)))
    # A clean stop kills every sandbox (nothing outlives a stopped server). --keep-sandboxes leaves
    # them running for a restart to adopt, as after kill -9.
    kill_on_shutdown: bool = True

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"
