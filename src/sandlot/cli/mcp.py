"""`sandlot mcp`: the tool registry as an MCP server, for MCP clients (Claude Desktop, IDEs, agents).

    sandlot mcp                                   # stdio; a sandbox made on first use, killed on exit
    sandlot mcp --session my-project              # stdio; the session's sandbox, kept between runs
    sandlot mcp --transport http --port 8931      # streamable HTTP at /mcp; callers send their API key

A client config (`mcpServers`): {"sandlot": {"command": "sandlot", "args": ["mcp"],
"env": {"SANDLOT_API_URL": "http://127.0.0.1:3000", "SANDLOT_API_KEY": "..."}}}.
"""

from __future__ import annotations

import typer

from ._common import ApiKey, ApiUrl


def mcp(
    transport: str = typer.Option("stdio", help="stdio, or http (streamable HTTP)."),
    api_url: str = ApiUrl,
    api_key: str = ApiKey,
    sandbox: str = typer.Option(None, help="Act on this existing sandbox instead of a session's."),
    session: str = typer.Option(None, help="Session name: its sandbox is found again next time (stdio)."),
    template: str = typer.Option("base", help="Template of the sandboxes made for sessions."),
    tools: list[str] = typer.Option(None, "--tool", help="Serve only these tools (repeatable)."),
    categories: list[str] = typer.Option(None, "--category", help="Serve only these categories (repeatable)."),
    host: str = typer.Option("127.0.0.1", help="HTTP: address to listen on."),
    port: int = typer.Option(8931, help="HTTP: port to listen on."),
) -> None:
    """Serve sandlot's tools over MCP (stdio or streamable HTTP)."""
    import anyio

    from ..tools import AsyncToolset
    from ..tools.mcp_server import Sandboxes, http_app, serve_stdio

    if transport not in ("stdio", "http"):
        raise typer.BadParameter("stdio or http", param_hint="--transport")
    toolset = AsyncToolset(None, tools or None, categories=categories or None)
    options = {"sandbox_id": sandbox, "session": session, "template": template}
    if transport == "stdio":
        anyio.run(serve_stdio, Sandboxes(api_url, api_key, **options), toolset)
        return
    import uvicorn

    uvicorn.run(http_app(api_url, toolset=toolset, **options), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(mcp)
