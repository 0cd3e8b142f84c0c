"""`sandlot serve --install-service`: a systemd unit that runs this server (docs/operations.md).

The unit runs the same `sandlot` executable with the same listen address and state directory,
and the settings file if one was given. Settings taken from the environment become Environment=
lines, except SANDLOT_API_KEY: a unit file is world-readable, so a secret belongs in the 0600
settings file (or an EnvironmentFile). systemd only stops the main process (KillMode=process):
the server removes its sandboxes itself on a stop, or leaves them for the next start to adopt
(keep_sandboxes), which systemd must not undo.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..server.config import ENV_PREFIX, Config

SECRET_SETTINGS = {"api_key"}


def default_unit_path() -> Path:
    if os.geteuid() == 0:
        return Path("/etc/systemd/system/sandlot.service")
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd" / "user" / "sandlot.service"


def render(config: Config, config_file: Path | None, executable: str) -> str:
    command = [executable, "serve", "--host", config.host, "--port", str(config.port), "--home", str(config.home)]
    if config_file is not None:
        command += ["--config", str(Path(config_file).resolve())]
    if config.keep_sandboxes:
        command.append("--keep-sandboxes")
    env = []
    for name in sorted(Config.model_fields):
        var = ENV_PREFIX + name.upper()
        if var in os.environ and name not in SECRET_SETTINGS and name not in ("host", "port", "home", "keep_sandboxes"):
            env.append(f"Environment={_quote(f'{var}={os.environ[var]}')}")
    root = os.geteuid() == 0
    return "\n".join([
        "[Unit]",
        "Description=sandlot: self-hosted sandboxes for AI agents",
        "After=network.target",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(_quote(part) for part in command),
        *env,
        # the server stops its sandboxes itself (or keeps them for the next start to adopt)
        "KillMode=process",
        "TimeoutStopSec=120",
        "Restart=on-failure",
        "RestartSec=2",
        "LimitNOFILE=16384",  # half for client connections (SANDLOT_MAX_CONNECTIONS); sandboxes inherit it
        "TasksMax=infinity",  # each sandbox has its own pids limit
        "Delegate=yes",  # sandboxes get cgroups of their own (cgroup v2)
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if root else 'default.target'}",
        "",
    ])


def install(path: Path | None, config: Config, config_file: Path | None) -> Path:
    """Write the unit to `path` (atomically, mode 0644) and return where it went."""
    path = Path(path) if path is not None else default_unit_path()
    running = Path(sys.argv[0])  # the sandlot that runs now, not another one on PATH
    executable = str(running.resolve()) if running.name == "sandlot" and running.is_file() else shutil.which("sandlot")
    if executable is None:
        raise FileNotFoundError("cannot tell where the sandlot executable is: run `sandlot serve --install-service`")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(render(config, config_file, executable))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _quote(word: str) -> str:
    """A word as systemd's command-line and Environment= parsing reads it back."""
    if word and not any(c in word for c in ' \t"\'\\$%;'):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{escaped}"'
