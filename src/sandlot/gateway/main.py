"""`mcp-gateway --config '<json>'`: what E2B's SDK runs, as root, after creating a sandbox with
`mcp=` (env GATEWAY_ACCESS_TOKEN: the token clients must send).

It forks a daemon and waits for it: the daemon installs and starts every configured stdio server,
learns their tools, listens on 127.0.0.1:50005 (the port proxy connects there, inside the
sandbox's network namespace), writes the token to /etc/mcp-gateway/.token (root only, 0600) and
then says "ready": the command exits 0. If anything fails the daemon stops what it started and the
command exits 1 with the reason on stderr (E2B's SDK raises "Failed to start MCP gateway: <it>").
The daemon's own output and the servers' stderr go to /var/log/mcp-gateway.log.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import uuid

from .config import ConfigError, parse_config
from .endpoint import Gateway, make_server
from .stdio import ServerFailed, StdioServer

PORT = 50005
TOKEN_FILE = "/etc/mcp-gateway/.token"
LOG_FILE = "/var/log/mcp-gateway.log"
START_TIMEOUT = 30.0  # seconds for a server to answer initialize, and then tools/list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="Run stdio MCP servers behind one "
                                     "streamable-HTTP endpoint (http://127.0.0.1:50005/mcp).")
    parser.add_argument("--config", required=True, help="the servers, as JSON (E2B's mcp= shape or mcpServers)")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    try:
        servers = parse_config(json.loads(args.config))
    except (ValueError, ConfigError) as e:  # json's errors are ValueErrors too
        print(f"mcp-gateway: {e}", file=sys.stderr)
        return 2
    if not servers:
        print("mcp-gateway: the configuration names no server", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print(f"mcp-gateway: run it as root (it writes {TOKEN_FILE})", file=sys.stderr)
        return 2
    token = os.environ.get("GATEWAY_ACCESS_TOKEN") or str(uuid.uuid4())

    ready_r, ready_w = os.pipe()
    if os.fork():  # the command: wait for the daemon's word
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as pipe:
            word = pipe.read().decode(errors="replace")
        if word == "ready":
            return 0
        print(f"mcp-gateway: {word or 'the gateway exited before it was ready'}", file=sys.stderr)
        return 1
    os.close(ready_r)
    _daemon(servers, token, args.port, ready_w)
    return 0  # not reached: the daemon exits itself


def _daemon(configs, token: str, port: int, ready_w: int) -> None:
    os.setsid()
    servers: list[StdioServer] = []

    def stop(*_) -> None:
        for server in servers:
            server.stop()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    log = None
    try:
        log = _detach()
        for config in configs:
            server = StdioServer(config, log)
            servers.append(server)
            server.start(START_TIMEOUT)
        gateway = Gateway(servers, token)
        try:
            http = make_server(gateway, "127.0.0.1", port)
        except OSError as e:
            raise ServerFailed(f"cannot listen on port {port}: {e.strerror} (is a gateway already running?)") \
                from None
        _write_token(token)
    except Exception as e:  # noqa: BLE001 - the daemon's boundary: whatever it is, the command reports it
        reason = str(e) if isinstance(e, (ServerFailed, OSError)) else repr(e)
        if log is not None:
            log.write(f"mcp-gateway: not started: {reason}\n".encode())
        os.write(ready_w, reason.encode())
        for server in servers:
            server.stop()
        os._exit(1)
    print(f"mcp-gateway: ready on 127.0.0.1:{port}, tools: {', '.join(gateway.routes)}", flush=True)
    os.write(ready_w, b"ready")
    os.close(ready_w)
    try:
        http.serve_forever()
    finally:
        stop()


def _detach():
    """stdin from /dev/null, stdout and stderr to the log (the command's pipes close with it); the
    log, for the servers' stderr."""
    log_fd = os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    return os.fdopen(log_fd, "ab", buffering=0)


def _write_token(token: str) -> None:
    """The token where get_mcp_token() reads it: a directory and a file only root may read."""
    directory = os.path.dirname(TOKEN_FILE)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        f.write(token)


if __name__ == "__main__":
    sys.exit(main())
