"""`sandlot mcp` and the /mcp endpoint, driven by the official `mcp` SDK's own client over both
transports (stdio, streamable HTTP) against a real sandlot server."""

from __future__ import annotations

import os
import ssl
import subprocess
import uuid
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from sandlot import Sandbox
from sandlot import SandboxService
from support import REPO, Server, free_port, start_server, start_tls_server, tracebacks, wait_until_serving

SANDLOT = str(REPO / ".venv" / "bin" / "sandlot")


def stdio(server, *args: str) -> StdioServerParameters:
    env = {**os.environ, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}
    return StdioServerParameters(command=SANDLOT, args=["mcp", *args], env=env)


async def exercise(client: Client, sandbox_ids: set[str]) -> str:
    """List and call tools, list and read resources; returns the sandbox the calls used."""
    tools = (await client.list_tools()).tools
    assert len(tools) == 31 and {"run_shell_command", "session_exec", "edit_file", "run_ipython_cell"} <= {t.name for t in tools}
    shell = next(t for t in tools if t.name == "run_shell_command")
    assert shell.input_schema["required"] == ["command"]
    result = await client.call_tool("run_shell_command", {"command": "echo hello from $(whoami)"})
    assert not result.is_error and result.content[0].text == "hello from user"
    assert result.structured_content["exit_code"] == 0
    failed = await client.call_tool("read_file", {"path": "/nonexistent"})
    assert failed.is_error and "nonexistent" in failed.content[0].text
    bad = await client.call_tool("run_shell_command", {"wrong": 1})
    assert bad.is_error
    await client.call_tool("write_file", {"path": "notes/a.txt", "content": "resource text"})
    status = await client.call_tool("get_sandbox_status", {})
    sandbox_id = status.structured_content["sandbox_id"]
    resources = (await client.list_resources()).resources
    assert f"sandlot://sandboxes/{sandbox_id}" in {str(r.uri) for r in resources}
    info = await client.read_resource(f"sandlot://sandboxes/{sandbox_id}")
    assert f'"sandbox_id": "{sandbox_id}"' in info.contents[0].text
    text = await client.read_resource(f"sandlot://sandboxes/{sandbox_id}/files/notes%2Fa.txt")
    assert text.contents[0].text == "resource text"
    templates = (await client.list_resource_templates()).resource_templates
    assert templates[0].uri_template == "sandlot://sandboxes/{sandbox_id}/files/{path}"
    sandbox_ids.add(sandbox_id)
    return sandbox_id


def live(server) -> set[str]:
    return {i.sandbox_id for i in Sandbox.list(api_url=server.url, api_key=server.api_key)}


async def test_stdio_fresh_session_is_released_on_exit(server):
    used: set[str] = set()
    async with Client(stdio(server)) as client:
        sandbox_id = await exercise(client, used)
        assert sandbox_id in live(server)
    assert sandbox_id not in live(server)


async def test_stdio_named_session_survives_restarts(server):
    session = "proj-" + uuid.uuid4().hex[:6]
    async with Client(stdio(server, "--session", session, "--tool", "run_shell_command",
                            "--tool", "get_sandbox_status")) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["run_shell_command", "get_sandbox_status"]
        await client.call_tool("run_shell_command", {"command": "echo kept > /tmp/mark"})
        first = (await client.call_tool("get_sandbox_status", {})).structured_content["sandbox_id"]
    async with Client(stdio(server, "--session", session)) as client:
        again = await client.call_tool("run_shell_command", {"command": "cat /tmp/mark"})
        assert again.content[0].text == "kept"
    service = SandboxService(api_url=server.url, api_key=server.api_key, namespace="mcp")
    assert [i.sandbox_id for i in service.list(session)] == [first]
    service.release(session)


def key_client(key: str | None, verify: ssl.SSLContext | bool = True) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"X-API-Key": key} if key else {}, timeout=120, verify=verify)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_standalone_http(server, mode, tmp_path):
    port = free_port()
    env = {**os.environ, "SANDLOT_API_URL": server.url}
    env.pop("SANDLOT_API_KEY", None)
    log = tmp_path / "mcp.log"  # pytest's: removed whether or not the server could start
    proc = subprocess.Popen([SANDLOT, "mcp", "--transport", "http", "--port", str(port)], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_until_serving(Server(f"http://127.0.0.1:{port}", "", Path("."), proc, log), port, 60)
        url = f"http://127.0.0.1:{port}/mcp"
        used: set[str] = set()
        async with key_client(server.api_key) as http, \
                Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            await exercise(client, used)
        for key in (None, "wrong-key"):
            async with key_client(key) as http:
                response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
                assert response.status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)
    # the HTTP sessions' sandboxes stay for their callers until idle; release them here
    SandboxService(api_url=server.url, api_key=server.api_key, namespace="mcp").release_all()


@pytest.fixture(scope="module")
def mounted(tmp_path_factory):
    """A sandlot server: `serve` mounts /mcp (SANDLOT_MCP is on by default)."""
    srv = start_server(tmp_path_factory.mktemp("mcp-mounted"), pool_size=0)
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log.read_text()


async def test_mounted_in_serve(mounted):
    url = mounted.url + "/mcp"
    used: set[str] = set()
    async with key_client(mounted.api_key) as http, Client(streamable_http_client(url, http_client=http)) as client:
        await exercise(client, used)
    async with key_client("e2b_" + "00" * 20) as http:
        assert (await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})).status_code == 401
    with pytest.raises(Exception):
        async with key_client(None) as http, Client(streamable_http_client(url, http_client=http)) as client:
            await client.list_tools()


async def test_mounted_in_serve_with_tls(tmp_path):
    """`serve --tls local-ca`: the endpoint's tools call the server over https with its own CA,
    though nothing in the server's environment names a CA file (start_tls_server)."""
    srv = start_tls_server(tmp_path / "home")
    try:
        trust = ssl.create_default_context(cafile=str(srv.ca))
        async with key_client(srv.api_key, trust) as http, \
                Client(streamable_http_client(srv.url + "/mcp", http_client=http)) as client:
            await exercise(client, set())
        SandboxService(api_url=srv.url, api_key=srv.api_key, namespace="mcp", ca_file=srv.ca).release_all()
    finally:
        srv.stop()
    assert not tracebacks(srv.log.read_text(errors="replace"))
