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


@dataclass
class Config:
    home: Path = field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 3000
    runtime: str = "namespace"
    default_template: str = "base"
    default_timeout: int = 300
    max_timeout: int = 24 * 3600
    pool_size: int = field(default_factory=lambda: int(os.environ.get("SANDLOT_POOL_SIZE", "2")))
    # Warm pools: `base` needs root to build, so an ordinary user's server keeps `host` warm instead.
    pool_templates: tuple[str, ...] = field(default_factory=lambda: ("base",) if os.geteuid() == 0 else ("host",))
    preset_api_key: str | None = field(default_factory=lambda: os.environ.get("SANDLOT_API_KEY") or None)
    max_upload_bytes: int = 1024 * 1024 * 1024
    # A clean stop kills every sandbox (nothing outlives a stopped server). --keep-sandboxes leaves
    # them running for a restart to adopt, as after kill -9.
    kill_on_shutdown: bool = True

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"
