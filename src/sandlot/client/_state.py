"""Changing a live sandbox: environment variables after creation (`set_envs()`), and what `reset()`
starts in its place.

Environment variables given to `create(envs=...)` live in the agent and reach every process. Those
set later go to a profile script (`/etc/profile.d/`, written as the sandbox's root), which every
login shell reads, so commands started from then on see them (`commands.run` uses `bash -l`); a
process already running, such as a code context's kernel, keeps the environment it started with.
The script is generated from a JSON copy next to it, so merges never parse shell.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Mapping
from typing import Any

from .. import _exceptions as E
from ._config import ConnectionConfig
from ._files import AsyncFiles
from ._models import Limits, SandboxInfo

ENVS_JSON = "/etc/sandlot/envs.json"
ENVS_PROFILE = "/etc/profile.d/zz-sandlot-envs.sh"  # read last: values set here win
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _check(envs: Mapping[str, object]) -> None:
    if not isinstance(envs, dict):
        raise E.InvalidArgument(f"envs must be a dict, got {type(envs).__name__}")
    for name, value in envs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise E.InvalidArgument(f"not an environment variable name: {name!r}")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise E.InvalidArgument(f"the value of {name} must be a string without NUL bytes (or None to unset)")


async def set_envs(files: AsyncFiles, envs: dict[str, str | None]) -> dict[str, str]:
    _check(envs)
    try:
        current: dict[str, str] = json.loads(await files.read(ENVS_JSON, user="root"))
    except E.FileNotFound:
        current = {}
    for name, value in envs.items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    script = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(current.items()))
    await files.write_files([(ENVS_JSON, json.dumps(current)), (ENVS_PROFILE, script)], user="root")
    return current


def reset_arguments(info: SandboxInfo, envs: dict[str, str], timeout: int | None,
                    config: ConnectionConfig) -> dict[str, Any]:
    """`create()`'s arguments for the fresh sandbox that replaces the one `info` describes in
    `reset()`: its template, metadata, creation `envs` and limits, on the same server; `timeout`
    defaults to what the old one had left (at least 60 s)."""
    if timeout is None:
        left = info.end_at.timestamp() - time.time() if info.end_at else 300
        timeout = max(60, int(left))
    custom = Limits(memory_mb=info.memory_mb or Limits.memory_mb, cpu_count=info.cpu_count or Limits.cpu_count,
                    disk_mb=info.disk_size_mb or Limits.disk_mb)
    return {"template": info.template_id, "timeout": timeout, "metadata": info.metadata, "envs": envs,
            "limits": None if custom == Limits() else custom, "api_url": config.api_url, "api_key": config.api_key,
            "ca_file": config.ca_file}
