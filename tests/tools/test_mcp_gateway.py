"""E2B's MCP gateway: `Sandbox.create(mcp=...)` with the official e2b SDK makes a sandbox of the
`mcp-gateway` template and runs `mcp-gateway` in it; the official `mcp` SDK's streamable-HTTP client
then reaches the servers' tools through the port proxy (`get_host(50005)`), with the sandbox's
MCP token. The stdio servers (tests/mcp_gateway_support.py) are put into the sandbox by the
configuration's own installCmd (sandboxes have no network: nothing is fetched)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import ssl
import subprocess
import sys
import uuid

import httpx
import pytest
from e2b import (
    AsyncSandbox,
    CommandExitException,
    Sandbox,
    SandboxException,
    SandboxQuery,
    Template,
)
from mcp.shared.exceptions import MCPError
from mcp_gateway_support import SERVER, client, custom
from support import free_port, leftovers, start_server, tracebacks

MCP = {"github/example/math": custom("math"), "github/example/text": custom("text", envs={"TOOLSET": "text",
                                                                                           "GREETING": "hi"})}


def mcp_url(server, sbx) -> str:
    """get_mcp_url()'s address over plain HTTP at the test server's port (`50005-<id>.localhost`)."""
    return f"http://{sbx.get_host(50005)}:{server.url.rsplit(':', 1)[1]}/mcp"


@pytest.fixture(scope="module")
def gateway(sdk_env):
    sbx = Sandbox.create(mcp=MCP, timeout=300)
    yield sbx
    sbx.kill()


def test_tools_of_two_servers_listed_and_called(sdk_env, gateway):
    token = gateway.get_mcp_token()
    assert gateway.get_info().template_id == "mcp-gateway"  # the SDK's default_mcp_template

    async def use() -> None:
        async with client(mcp_url(sdk_env, gateway), token) as mcp:
            assert mcp.server_info.name == "sandlot-mcp-gateway"
            tools = {t.name: t for t in (await mcp.list_tools()).tools}
            assert sorted(tools) == ["add", "crash", "fail", "upper", "whoami"]  # unprefixed, both servers
            assert tools["add"].input_schema["required"] == ["a", "b"]
            added = await mcp.call_tool("add", {"a": 2, "b": 40})
            assert added.content[0].text == "42" and not added.is_error
            assert (await mcp.call_tool("upper", {"text": "gateway"})).content[0].text == "GATEWAY"
            # servers run as the sandbox's user, in its home, with their envs
            assert (await mcp.call_tool("whoami", {})).content[0].text == "1000 user /home/user hi"
            failed = await mcp.call_tool("fail", {})
            assert failed.is_error and failed.content[0].text == "it failed"
            with pytest.raises(MCPError, match="unknown tool"):
                await mcp.call_tool("nope", {})

    asyncio.run(use())


def test_the_token_is_the_sdks_and_only_root_reads_it(gateway):
    token = gateway.get_mcp_token()  # what create() made and sent as GATEWAY_ACCESS_TOKEN
    fresh = Sandbox.connect(gateway.sandbox_id)
    assert fresh.get_mcp_token() == token  # read from /etc/mcp-gateway/.token as root
    mode = gateway.commands.run("stat -c '%a %U' /etc/mcp-gateway /etc/mcp-gateway/.token", user="root").stdout
    assert mode.split("\n")[:2] == ["700 root", "600 root"]
    with pytest.raises(CommandExitException, match="Permission denied"):
        gateway.commands.run("cat /etc/mcp-gateway/.token", user="user")


def test_a_missing_or_wrong_token_is_refused(sdk_env, gateway):
    url = mcp_url(sdk_env, gateway)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "t", "version": "1"}}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": gateway.get_mcp_token()}):
        r = httpx.post(url, json=initialize, headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        assert "get_mcp_token" in r.json()["error"]["message"]
        assert "mcp-session-id" not in r.headers

    async def use() -> None:
        async with client(url, "wrong") as mcp:
            await mcp.list_tools()

    with pytest.raises(BaseExceptionGroup) as e:  # from the client's task groups
        asyncio.run(use())
    assert [str(x) for x in leaves(e.value)] == [
        "unauthorized: send the sandbox's MCP token (get_mcp_token()) as 'Authorization: Bearer <token>'"]


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    assert isinstance(error, MCPError)
    return [error]


def test_sessions_as_the_streamable_http_spec_says(sdk_env, gateway):
    url, auth = mcp_url(sdk_env, gateway), {"Authorization": f"Bearer {gateway.get_mcp_token()}"}
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    r = httpx.post(url, json=tools_list, headers=auth, timeout=30)
    assert r.status_code == 400 and "Mcp-Session-Id" in r.json()["error"]["message"]  # none: initialize first
    r = httpx.post(url, json=tools_list, headers={**auth, "Mcp-Session-Id": "made-up"}, timeout=30)
    assert r.status_code == 404
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        headers=auth, timeout=30)
    session = {**auth, "Mcp-Session-Id": r.headers["mcp-session-id"]}
    assert r.json()["result"]["protocolVersion"] == "2025-03-26"
    assert httpx.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session,
                      timeout=30).status_code == 202
    listed = httpx.post(url, json=tools_list, headers=session, timeout=30).json()
    assert sorted(t["name"] for t in listed["result"]["tools"]) == ["add", "crash", "fail", "upper", "whoami"]
    assert httpx.get(url, headers=session, timeout=30).status_code == 405  # no server-sent stream offered
    # bad input: a clear JSON-RPC error, never a dropped connection
    r = httpx.post(url, content=b"{not json", headers=session, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = httpx.post(url, json=[tools_list], headers=session, timeout=30)  # a batch (gone in 2025-06-18)
    assert r.status_code == 400 and "one JSON-RPC 2.0 message per POST" in r.json()["error"]["message"]
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "resources/list"}, headers=session, timeout=30)
    assert r.status_code == 200 and r.json()["error"] == {"code": -32601, "message": "method not found: resources/list"}
    r = httpx.post(url.replace("/mcp", "/other"), json=tools_list, headers=session, timeout=30)
    assert r.status_code == 404 and "the MCP endpoint is /mcp" in r.json()["error"]["message"]
    assert httpx.delete(url, headers=session, timeout=30).status_code == 200
    assert httpx.post(url, json=tools_list, headers=session, timeout=30).status_code == 404  # ended


def left(tag: str) -> list:
    return Sandbox.list(query=SandboxQuery(metadata={"test": tag})).next_items()


def test_catalog_servers_are_refused_by_name(sdk_env):
    with pytest.raises(SandboxException, match="Failed to start MCP gateway") as e:
        Sandbox.create(mcp={"airtable": {"airtableApiKey": "k", "nodeenv": "x"},
                            "github/example/math": custom("math"), "exa": {"apiKey": "k"}},
                       metadata={"test": "catalog"})
    assert "E2B's catalog cannot run here: airtable, exa (they are Docker images" in str(e.value)
    assert not left("catalog")  # the SDK killed the sandbox it made


def test_a_server_that_fails_to_start_fails_the_create(sdk_env):
    broken = {"github/example/math": custom("math"),
              "github/example/broken": {"runCmd": "echo cannot find my_server.py >&2; exit 3"}}
    with pytest.raises(SandboxException, match="Failed to start MCP gateway") as e:
        Sandbox.create(mcp=broken, metadata={"test": "broken"})
    assert "MCP server github/example/broken: the server exited with code 3; its stderr: cannot find my_server.py" \
        in str(e.value)
    with pytest.raises(SandboxException, match="installCmd exited with 1: .*no-such-file"):
        Sandbox.create(mcp={"x": {"installCmd": "cat /no-such-file", "runCmd": "true"}}, metadata={"test": "broken"})
    assert not left("broken")


def test_a_server_that_exits_later_fails_its_calls_only(sdk_env):
    sbx = Sandbox.create(mcp=MCP)
    try:
        async def use() -> None:
            async with client(mcp_url(sdk_env, sbx), sbx.get_mcp_token()) as mcp:
                with pytest.raises(MCPError, match="the server exited with code 7"):
                    await mcp.call_tool("crash", {})
                with pytest.raises(MCPError, match="the server exited with code 7"):
                    await mcp.call_tool("add", {"a": 1, "b": 2})  # the same server's
                assert (await mcp.call_tool("upper", {"text": "still"})).content[0].text == "STILL"

        asyncio.run(use())
    finally:
        sbx.kill()


def test_bad_configurations_fail_the_create(sdk_env):
    twice = {"github/a/math": custom("math"), "github/b/math": custom("math")}
    with pytest.raises(SandboxException, match="MCP servers github/a/math and github/b/math both offer a tool "
                                               "named add"):
        Sandbox.create(mcp=twice, metadata={"test": "bad"})
    with pytest.raises(SandboxException, match="MCP server x: 'envs' maps names to strings"):
        Sandbox.create(mcp={"x": {"runCmd": "true", "envs": {"N": 1}}}, metadata={"test": "bad"})
    with pytest.raises(SandboxException, match="the configuration names no server"):
        Sandbox.create(mcp={}, metadata={"test": "bad"})
    assert not left("bad")


def test_async_sandbox_with_mcp(sdk_env):
    async def use() -> None:
        sbx = await AsyncSandbox.create(mcp={"github/example/text": custom("text")})
        try:
            async with client(mcp_url(sdk_env, sbx), await sbx.get_mcp_token()) as mcp:
                assert sorted(t.name for t in (await mcp.list_tools()).tools) == ["upper", "whoami"]
                assert (await mcp.call_tool("upper", {"text": "x"})).content[0].text == "X"
        finally:
            await sbx.kill()

    asyncio.run(use())


def test_the_gateway_runs_once_and_logs(gateway):
    token = gateway.get_mcp_token()
    again = gateway.commands.run(f"mcp-gateway --config {shlex.quote(json.dumps(MCP))} || echo exit=$?",
                                 user="root", envs={"GATEWAY_ACCESS_TOKEN": "other"})
    assert "is a gateway already running?" in again.stderr and "exit=1" in again.stdout
    assert gateway.files.read("/etc/mcp-gateway/.token", user="root") == token  # the running one's
    log = gateway.commands.run("cat /var/log/mcp-gateway.log", user="root").stdout
    assert "ready on 127.0.0.1:50005, tools: add, fail, crash, upper, whoami" in log


def test_a_template_built_on_mcp_gateway_holds_the_server(sdk_env, tmp_path):
    """What replaces E2B's clone of a custom server's repository: a template built (with the SDK's
    Template builder) from `mcp-gateway` with the server in it; create(template, mcp=) runs it."""
    (tmp_path / "server.py").write_text(SERVER)
    name = f"mcp-math-{uuid.uuid4().hex[:8]}"
    Template.build(Template(file_context_path=str(tmp_path)).from_template("mcp-gateway")
                   .copy("server.py", "/opt/mcp/", user="root"), name)
    try:
        sbx = Sandbox.create(name, mcp={"github/example/math": {"runCmd": "python3 /opt/mcp/server.py",
                                                                "envs": {"TOOLSET": "math"}}})
        try:
            async def use() -> None:
                async with client(mcp_url(sdk_env, sbx), sbx.get_mcp_token()) as mcp:
                    assert sorted(t.name for t in (await mcp.list_tools()).tools) == ["add", "crash", "fail"]
                    assert (await mcp.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"

            asyncio.run(use())
        finally:
            sbx.kill()
    finally:
        httpx.delete(f"{sdk_env.url}/templates/{name}", headers={"X-API-KEY": sdk_env.api_key}, timeout=60)


# The official SDK in a process of its own (its transport reads the trust store once per process),
# with only what a user of a TLS server sets: E2B_DOMAIN (own-domain mode) and SSL_CERT_FILE.
CREATE = """
import json, sys
from e2b import Sandbox
sbx = Sandbox.create(mcp=json.loads(sys.argv[1]), timeout=120)
print(json.dumps({"id": sbx.sandbox_id, "url": sbx.get_mcp_url(), "token": sbx.get_mcp_token()}))
"""


def test_get_mcp_url_over_tls(tmp_path):
    """With the server's TLS (--tls local-ca) get_mcp_url() works as it is: https, verified against
    the server's CA file."""
    port = free_port()
    domain = f"sandlot.localhost:{port}"  # *.localhost alone would be one label under the wildcard
    srv = start_server(tmp_path / "home", port=port, pool_size=0, extra_env={
        "SANDLOT_TLS": "local-ca", "SANDLOT_DOMAIN": domain, "SANDLOT_POOL_TEMPLATES": ""})
    ca = srv.home / "ca" / "proxy" / "ca.pem"
    trust = ssl.create_default_context(cafile=str(ca))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("E2B_", "SSL_CERT"))}
        made = subprocess.run([sys.executable, "-c", CREATE, json.dumps({"github/example/text": custom("text")})],
                              env={**env, "SSL_CERT_FILE": str(ca), "E2B_API_KEY": srv.api_key, "E2B_DOMAIN": domain},
                              capture_output=True, text=True, timeout=180, check=False)
        assert made.returncode == 0, made.stderr[-3000:]
        found = json.loads(made.stdout)
        assert found["url"] == f"https://50005-{found['id']}.{domain}/mcp"

        async def use() -> None:
            async with client(found["url"], found["token"], verify=trust) as mcp:
                assert sorted(t.name for t in (await mcp.list_tools()).tools) == ["upper", "whoami"]
                assert (await mcp.call_tool("upper", {"text": "tls"})).content[0].text == "TLS"

        asyncio.run(use())
        assert httpx.post(found["url"], json={}, verify=trust, timeout=30).status_code == 401
        httpx.delete(f"https://127.0.0.1:{port}/sandboxes/{found['id']}", headers={"X-API-KEY": srv.api_key},
                     verify=trust, timeout=30)
    finally:
        srv.stop()
    assert not leftovers(srv.home)
    assert not tracebacks(srv.log.read_text(errors="replace"))
