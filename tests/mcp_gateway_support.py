"""A small stdio MCP server for tests of E2B's MCP gateway (the e2b SDK's and the sandlot SDK's
`create(mcp=...)`), put into a sandbox by its configuration's own installCmd (sandboxes have no
network: nothing is fetched), and the official `mcp` SDK's client to reach the gateway."""

from __future__ import annotations

import base64
import contextlib
import ssl
import textwrap
from collections.abc import AsyncIterator

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

# A stdio MCP server, stdlib only; which tools it offers depends on TOOLSET (one script, two servers).
SERVER = textwrap.dedent('''
    import json, os, sys

    OBJECT = {"type": "object", "properties": {}}
    TOOLSETS = {
        "math": [
            {"name": "add", "description": "Add two integers.",
             "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                             "required": ["a", "b"]}},
            {"name": "fail", "description": "Always fails.", "inputSchema": OBJECT},
            {"name": "crash", "description": "Exits the server.", "inputSchema": OBJECT},
        ],
        "text": [
            {"name": "upper", "description": "Upper-case a text.",
             "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
            {"name": "whoami", "description": "Who and where this server runs.", "inputSchema": OBJECT},
        ],
    }
    TOOLS = TOOLSETS[os.environ["TOOLSET"]]

    def call(name, args):
        if name == "add":
            return str(args["a"] + args["b"]), False
        if name == "upper":
            return args["text"].upper(), False
        if name == "crash":
            os._exit(7)
        if name == "whoami":
            return f"{os.getuid()} {os.environ.get('USER')} {os.getcwd()} {os.environ.get('GREETING')}", False
        return "it failed", True

    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue
        method, params = msg["method"], msg.get("params") or {}
        if method == "initialize":
            result = {"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": os.environ["TOOLSET"], "version": "1"}}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call" and params["name"] in [t["name"] for t in TOOLS]:
            text, error = call(params["name"], params.get("arguments") or {})
            result = {"content": [{"type": "text", "text": text}], "isError": error}
        else:
            print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": method}}),
                  flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
''')
INSTALL = f"echo {base64.b64encode(SERVER.encode()).decode()} | base64 -d > ~/mcp_server.py"


def custom(toolset: str, **extra) -> dict:
    """E2B's custom-server entry for SERVER offering `toolset` (its repository is not cloned here)."""
    return {"installCmd": INSTALL, "runCmd": "python3 ~/mcp_server.py", "envs": {"TOOLSET": toolset}, **extra}


@contextlib.asynccontextmanager
async def client(url: str, token: str | None, verify: ssl.SSLContext | bool = True) -> AsyncIterator[Client]:
    """The mcp SDK's client over streamable HTTP, sending the token; its connections closed after."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60, verify=verify) as http, \
            Client(streamable_http_client(url, http_client=http)) as mcp:
        yield mcp
