"""E2B's MCP gateway from the sandlot SDK: `create(mcp=...)`, `get_mcp_url()`, `get_mcp_token()`.

What the e2b SDK does, step for step (docs/mcp.md): a sandbox of template `mcp-gateway` unless one
is named, then `mcp-gateway --config '<json>'` run as root with GATEWAY_ACCESS_TOKEN (a fresh
uuid); if that fails the sandbox is killed and the create raises. The gateway serves
`/mcp` on port 50005 of the sandbox, reached through the server's port proxy.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Mapping
from typing import Any

from .. import _exceptions as E
from ._commands import AsyncCommands
from ._files import AsyncFiles

MCP_PORT = 50005  # E2B's `Sandbox.mcp_port`
MCP_TEMPLATE = "mcp-gateway"  # E2B's `default_mcp_template`; templates/gateway.py builds it
TOKEN_PATH = "/etc/mcp-gateway/.token"  # written by the gateway, root's (0600)
MAX_TOKEN_BYTES = 4096  # the gateway's are 36 characters (a uuid4)


def config_json(mcp: Mapping[str, Any]) -> str:
    """The gateway's --config, checked before anything is created: a JSON object of servers."""
    if not isinstance(mcp, Mapping):
        raise E.InvalidArgument(f"mcp must be a mapping of server names to their settings, got {type(mcp).__name__}")
    try:
        return json.dumps(dict(mcp))
    except (TypeError, ValueError) as e:
        raise E.InvalidArgument(f"mcp must be JSON: {e}") from None


async def start_gateway(commands: AsyncCommands, sandbox_id: str, config: str) -> str:
    """Run the gateway in a new sandbox (through its `commands`); its token. McpGatewayError with
    the gateway's reason when the command failed, else the error as it was (the caller kills the
    sandbox either way)."""
    token = str(uuid.uuid4())
    try:
        await commands.run(f"mcp-gateway --config {shlex.quote(config)}", user="root",
                           envs={"GATEWAY_ACCESS_TOKEN": token})
    except E.CommandExitError as e:
        reason = e.stderr.strip() or e.stdout.strip() or f"exit code {e.exit_code}"
        if e.exit_code == 127:  # the shell found no such command
            reason += f" (the template has no mcp-gateway command: build yours from {MCP_TEMPLATE!r})"
        raise E.McpGatewayError(f"the MCP gateway did not start: {reason}", stderr=e.stderr,
                                exit_code=e.exit_code, sandbox_id=sandbox_id) from e
    return token


async def read_token(files: AsyncFiles) -> str | None:
    """The running gateway's token, read as root; None when the sandbox runs no gateway. Read no
    further than MAX_TOKEN_BYTES: the file is the sandbox's, whose root may make it any size."""
    try:
        chunks = await files.read(TOKEN_PATH, format="stream", user="root")
    except E.FileNotFound:
        return None
    token = b""
    try:
        async for chunk in chunks:
            token += chunk
            if len(token) > MAX_TOKEN_BYTES:
                raise E.InvalidArgument(f"{TOKEN_PATH} in the sandbox is larger than a token "
                                        f"({MAX_TOKEN_BYTES} bytes): not the gateway's")
    finally:  # its response is closed now, not when the generator is collected
        await getattr(chunks, "aclose")()
    return token.decode(errors="replace")
