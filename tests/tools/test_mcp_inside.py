"""MCP servers inside a sandbox: a small MCP server written here is put into the sandbox and
started there; the host talks to it through the process's stdin/stdout (no network involved)."""

from __future__ import annotations

import textwrap

import pytest

from sandlot import AsyncSandbox, InvalidArgument, Unsupported
from sandlot.tools import AsyncToolset, Toolset
from sandlot.tools.mcp_inside import MCPConfigConverter, McpServers, parse_config

# A stdio MCP server using only the standard library (the base template has python3, no network).
CALC_SERVER = textwrap.dedent('''
    import json, os, socket, sys

    TOOLS = [
        {"name": "add", "description": "Add two integers.",
         "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                         "required": ["a", "b"]}},
        {"name": "where", "description": "Where this server runs.", "inputSchema": {"type": "object", "properties": {}}},
        {"name": "fail", "description": "Always fails.", "inputSchema": {"type": "object", "properties": {}}},
    ]

    def answer(msg):
        method, params = msg["method"], msg.get("params") or {}
        if method == "initialize":
            return {"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
                    "serverInfo": {"name": "calc", "version": "1"}}
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": TOOLS}
        if method == "tools/call":
            name, args = params["name"], params.get("arguments") or {}
            if name == "add":
                return {"content": [{"type": "text", "text": str(args["a"] + args["b"])}], "isError": False}
            if name == "where":
                text = f"{socket.gethostname()} {os.getlogin() if False else os.environ.get('USER')} {os.environ.get('CALC_MODE')}"
                return {"content": [{"type": "text", "text": text}], "isError": False}
            return {"content": [{"type": "text", "text": "it failed"}], "isError": True}
        raise KeyError(method)

    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue  # notifications
        try:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": answer(msg)}
        except KeyError as e:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": f"no method {e}"}}
        print(json.dumps(reply), flush=True)
''')

CONFIG = {"mcpServers": {"calc": {"command": "python3", "args": ["/home/user/calc_server.py"],
                                  "env": {"CALC_MODE": "inside"}}}}


def test_agentscope_add_mcp_servers(sandbox):
    """Seed 003: sandbox.add_mcp_servers(server_configs=...); list_tools(); call_tool(name, arguments)."""
    sandbox.files.write("calc_server.py", CALC_SERVER)
    toolset = Toolset(sandbox, ["run_shell_command"])
    try:
        added = toolset.add_mcp_servers(server_configs=CONFIG, blacklist=["fail"])
        assert [t.name for t in added] == ["add", "where"]
        assert toolset.names == ["run_shell_command", "add", "where"]
        assert toolset.call_tool("add", {"a": 2, "b": 40}).text == "42"
        assert toolset.add(5, 6).text == "11"  # positional, in the schema's order
        assert toolset.call_tool("where").text == "sandbox user inside"  # it runs in the sandbox, as user
        bad = toolset.call_tool("add", {"a": "two", "b": 1})
        assert bad.is_error and "a: 'two' is not of type 'integer'" in bad.text
        definitions = {d["function"]["name"]: d for d in toolset.openai_tools()}
        assert definitions["add"]["function"]["parameters"]["required"] == ["a", "b"]
        ps = toolset.call_tool("run_shell_command", {"command": "pgrep -fc '^python3 /home/user/calc_server.py' || true"}).text
        assert ps == "1"
    finally:
        toolset.close()
    assert toolset.names == ["run_shell_command"]
    ps = toolset.call_tool("run_shell_command", {"command": "pgrep -fc '^python3 /home/user/calc_server.py' || true"}).text
    assert ps == "0"  # the server was stopped


def test_converter_whitelist_and_e2b_shape(sandbox):
    sandbox.files.write("calc_server.py", CALC_SERVER)
    e2b_shape = {"calc": {"runCmd": "python3 calc_server.py", "installCmd": "echo installed > /tmp/installed",
                          "envs": {"CALC_MODE": "e2b"}}}
    tools = MCPConfigConverter(server_configs=e2b_shape).to_builtin_tools(sandbox=sandbox, whitelist=["where", "fail"])
    assert [t.name for t in tools] == ["where", "fail"]
    toolset = Toolset(sandbox, tools)
    assert toolset.call_tool("where").text == "sandbox user e2b"
    failed = toolset.call_tool("fail")
    assert failed.is_error and failed.text == "it failed"
    assert sandbox.files.read("/tmp/installed") == "installed\n"


def test_converter_without_sandbox_uses_temporary_ones(conn):
    """to_builtin_tools(sandbox_type=...): each call starts the server in a temporary sandbox. The
    server comes from the template here (a command every sandbox has), as nothing else is there."""
    config = {"mcpServers": {"calc": {"command": "bash", "args": ["-c", f"python3 -c {_quoted(CALC_SERVER)}"]}}}
    tools = MCPConfigConverter(config).to_builtin_tools(template="base", blacklist=["fail"], **conn)
    assert [t.name for t in tools] == ["add", "where"]
    assert Toolset(None, tools, **conn).call_tool("add", {"a": 1, "b": 2}).text == "3"


def _quoted(code: str) -> str:
    import shlex

    return shlex.quote(code)


async def test_async_servers_and_gateway_seam(conn):
    async with await AsyncSandbox.create(**conn) as sandbox:
        await sandbox.files.write("calc_server.py", CALC_SERVER)
        servers = await McpServers.start(sandbox, CONFIG)
        try:
            toolset = AsyncToolset(sandbox, []).with_tools(*servers.tools())
            assert (await toolset.call_tool("add", {"a": 20, "b": 22})).text == "42"
            with pytest.raises(Unsupported, match="port proxy"):
                servers.url()
        finally:
            await servers.close()


def test_bad_configurations_are_refused():
    with pytest.raises(Unsupported, match="network"):
        parse_config({"exa": {"apiKey": "x"}})  # an E2B catalog server
    with pytest.raises(Unsupported, match="network"):
        parse_config({"mcpServers": {"remote": {"url": "http://example.invalid/mcp"}}})
    with pytest.raises(InvalidArgument, match="'command' is required"):
        parse_config({"mcpServers": {"x": {"args": []}}})
    with pytest.raises(InvalidArgument):
        Toolset(None).add_mcp_servers(CONFIG)  # nothing to run them in


def test_a_server_that_does_not_start_is_an_error(sandbox):
    toolset = Toolset(sandbox, [])
    with pytest.raises(Exception, match="did not start|exited|closed|Connection"):
        toolset.add_mcp_servers({"mcpServers": {"broken": {"command": "python3", "args": ["-c", "raise SystemExit(3)"]}}})
    toolset.close()


# Run apart (a process of its own, whose peak memory is its own): start CALC_SERVER in the sandbox
# after NOISE bytes of stdout without a newline, call `add`, print the peak RSS in KiB.
_NOISY_CLIENT = textwrap.dedent('''
    import resource, sys
    from sandlot import Sandbox
    from sandlot.tools import Toolset
    url, key, sandbox_id, noise = sys.argv[1:5]
    sandbox = Sandbox.connect(sandbox_id, api_url=url, api_key=key)
    command = f"head -c {noise} /dev/zero | tr '\\\\0' x; echo; exec python3 /home/user/calc_server.py"
    toolset = Toolset(sandbox, [])
    toolset.add_mcp_servers({"mcpServers": {"calc": {"command": "bash", "args": ["-c", command]}}})
    assert toolset.call_tool("add", {"a": 1, "b": 2}).text == "3"
    toolset.close()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
''')


def test_a_server_writing_endless_lines_costs_the_host_a_bounded_line(server, sandbox):
    """The server is the sandbox's: what it writes on stdout is held no longer than a line, and
    no more of a line than MAX_MESSAGE_BYTES. The host held every byte it ever wrote (the command
    handle kept its output) and joined the line begun with each chunk (quadratic)."""
    import os
    import subprocess
    import sys

    sandbox.files.write("calc_server.py", CALC_SERVER)

    def peak(noise: int) -> int:
        done = subprocess.run([sys.executable, "-c", _NOISY_CLIENT, server.url, server.api_key, sandbox.sandbox_id,
                               str(noise)], capture_output=True, text=True, timeout=300, env=os.environ)
        assert done.returncode == 0, done.stderr[-3000:]
        return int(done.stdout.split()[-1]) * 1024

    grown = peak(96 << 20) - peak(0)
    assert grown < 48 << 20, f"96 MiB without a newline grew the host's client by {grown >> 20} MiB"
