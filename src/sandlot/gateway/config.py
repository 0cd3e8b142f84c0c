"""MCP server configurations: both shapes sandlot accepts, read into ServerConfigs (stdlib only: the
in-sandbox gateway and the host's tools/mcp_inside.py both use it).

    {"mcpServers": {"time": {"command": "python3", "args": ["-m", "time_server"], "env": {...}}}}
        (Claude Desktop / AgentScope's MCPConfigConverter and add_mcp_servers)
    {"github/owner/repo": {"runCmd": "python3 server.py", "installCmd": "pip install -r req.txt", "envs": {...}}}
        (E2B's `mcp=` create option, custom servers)

E2B's catalog servers (`{"airtable": {"airtableApiKey": ...}}`, any entry without runCmd) are Docker
images from E2B's registry and custom servers name a GitHub repository E2B clones: neither can be
fetched here (no network, no Docker in a sandbox), so catalog entries are refused by name and a
custom server's repository is not cloned: its runCmd must find what it runs in the sandbox.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A configuration that is malformed (`unsupported` False) or names what cannot run here (True)."""

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True)
class ServerConfig:
    """One stdio MCP server: a shell command line, its environment and directory, and an optional
    install command run once before it."""

    name: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    install: str | None = None


def parse_config(config: Mapping) -> list[ServerConfig]:
    """Both shapes (see the module docstring) into ServerConfigs; ConfigError saying what is wrong,
    naming every catalog server at once."""
    if not isinstance(config, Mapping):
        raise ConfigError("an MCP server configuration is a dict")
    if "mcpServers" in config:
        if not isinstance(config["mcpServers"], Mapping):
            raise ConfigError("'mcpServers' maps server names to their configurations")
        return [_claude_entry(name, entry) for name, entry in config["mcpServers"].items()]
    for name, entry in config.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"MCP server {name}: its configuration is a dict")
    catalog = [name for name, entry in config.items() if "runCmd" not in entry]
    if catalog:
        raise ConfigError(
            f"MCP servers from E2B's catalog cannot run here: {', '.join(catalog)} (they are Docker images "
            "fetched over the network, which sandboxes lack); give a custom server with a runCmd that starts "
            "a stdio MCP server already in the sandbox (or its template)", unsupported=True)
    return [_e2b_entry(name, entry) for name, entry in config.items()]


def _claude_entry(name: str, entry) -> ServerConfig:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"MCP server {name}: its configuration is a dict")
    if "url" in entry or entry.get("type") in ("http", "sse", "streamable-http"):
        raise ConfigError(f"MCP server {name}: remote servers need network, which sandboxes lack", unsupported=True)
    if not isinstance(entry.get("command"), str) or not entry["command"]:
        raise ConfigError(f"MCP server {name}: 'command' is required")
    args = entry.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"MCP server {name}: 'args' is a list of strings")
    return ServerConfig(name, shlex.join([entry["command"], *args]), _strings(name, "env", entry.get("env")),
                        _optional(name, "cwd", entry.get("cwd")))


def _e2b_entry(name: str, entry: Mapping) -> ServerConfig:
    if not isinstance(entry["runCmd"], str) or not entry["runCmd"].strip():
        raise ConfigError(f"MCP server {name}: 'runCmd' is a command line")
    return ServerConfig(name, entry["runCmd"], _strings(name, "envs", entry.get("envs")),
                        _optional(name, "cwd", entry.get("cwd")), _optional(name, "installCmd", entry.get("installCmd")))


def _strings(name: str, key: str, value) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"MCP server {name}: '{key}' maps names to strings")
    return dict(value)


def _optional(name: str, key: str, value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"MCP server {name}: '{key}' is a string")
    return value or None
