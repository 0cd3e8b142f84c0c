"""E2B's MCP gateway from sandlot's own SDK: `create(mcp=...)` starts it as the e2b SDK does, and the
official `mcp` client reaches the servers' tools at `get_mcp_url()` with `get_mcp_token()`,
through the test server's port proxy. The stdio servers are tests/mcp_gateway_support.py's."""

from __future__ import annotations

import uuid

import pytest
from mcp_gateway_support import client, custom
from sdk_support import collect, maybe

from sandlot import InvalidArgument, McpGatewayError

MCP = {"github/example/math": custom("math"), "github/example/text": custom("text")}


async def test_create_with_mcp_and_call_a_tool(server, sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(mcp=MCP, **conn))
    try:
        assert sbx.template_id == "mcp-gateway"  # E2B's default_mcp_template
        port = server.url.rsplit(":", 1)[1]  # the server has no --domain: localhost at its port
        assert sbx.get_host(8000) == f"8000-{sbx.sandbox_id}.localhost:{port}"
        assert sbx.get_mcp_url() == f"http://50005-{sbx.sandbox_id}.localhost:{port}/mcp"
        token = await maybe(sbx.get_mcp_token())
        assert len(token) == 36  # a uuid, as the e2b SDK makes
        async with client(sbx.get_mcp_url(), token) as mcp:
            assert sorted(t.name for t in (await mcp.list_tools()).tools) == ["add", "crash", "fail", "upper",
                                                                                "whoami"]
            added = await mcp.call_tool("add", {"a": 2, "b": 40})
            assert added.content[0].text == "42" and not added.is_error
        # another handle reads the running gateway's token from the sandbox (as root)
        again = await maybe(cls.connect(sbx.sandbox_id, **conn))
        assert await maybe(again.get_mcp_token()) == token
        await maybe(again.close())
    finally:
        await maybe(sbx.kill())
        await maybe(sbx.close())


async def test_a_gateway_that_cannot_start_fails_the_create(sdk):
    cls, conn = sdk
    tag = {"test": f"mcp-{uuid.uuid4().hex[:8]}"}
    broken = {"github/example/math": custom("math"),
              "github/example/broken": {"runCmd": "echo cannot find my_server.py >&2; exit 3"}}
    with pytest.raises(McpGatewayError) as e:
        await maybe(cls.create(mcp=broken, metadata=tag, **conn))
    assert e.value.message.startswith("the MCP gateway did not start: ")
    assert "MCP server github/example/broken: the server exited with code 3; its stderr: cannot find my_server.py" \
        in e.value.message
    assert e.value.details["exit_code"] == 1 and e.value.details["sandbox_id"]
    with pytest.raises(McpGatewayError, match="E2B's catalog cannot run here: airtable"):
        await maybe(cls.create(mcp={"airtable": {"airtableApiKey": "k"}}, metadata=tag, **conn))
    # a template without the gateway's command: named in the error
    with pytest.raises(McpGatewayError, match="the template has no mcp-gateway command"):
        await maybe(cls.create("base", mcp={"x": custom("math")}, metadata=tag, **conn))
    assert await collect(cls.list(metadata=tag, **conn)) == []  # each sandbox was killed


async def test_bad_mcp_is_refused_before_anything_is_made(sdk):
    cls, conn = sdk
    tag = {"test": f"mcp-{uuid.uuid4().hex[:8]}"}
    with pytest.raises(InvalidArgument, match="mcp must be a mapping"):
        await maybe(cls.create(mcp=["github/example/math"], metadata=tag, **conn))
    with pytest.raises(InvalidArgument, match="mcp must be JSON"):
        await maybe(cls.create(mcp={"x": {"runCmd": object()}}, metadata=tag, **conn))
    assert await collect(cls.list(metadata=tag, **conn)) == []


async def test_no_gateway_no_token(sandbox):
    assert await maybe(sandbox.get_mcp_token()) is None
    with pytest.raises(InvalidArgument, match="port must be a number from 1 to 65535"):
        sandbox.get_host(0)


async def test_a_token_file_the_sandbox_made_huge_is_not_read_whole(sandbox):
    """The token file is the sandbox's: its root may make it any size (here 64 MiB, sparse), and the
    SDK reads no more of it than a token's size."""
    await maybe(sandbox.commands.run("mkdir -p /etc/mcp-gateway && truncate -s 64M /etc/mcp-gateway/.token",
                                     user="root"))
    try:
        with pytest.raises(InvalidArgument, match="larger than a token"):
            await maybe(sandbox.get_mcp_token())
        await maybe(sandbox.commands.run("printf t0ken > /etc/mcp-gateway/.token", user="root"))
        assert await maybe(sandbox.get_mcp_token()) == "t0ken"
    finally:
        await maybe(sandbox.commands.run("rm -rf /etc/mcp-gateway", user="root"))
