"""The in-sandbox MCP gateway (stdlib only, the template's python3): E2B's `mcp-gateway` program,
which runs a sandbox's stdio MCP servers behind one streamable-HTTP endpoint (port 50005, /mcp).
main.py: the command and its daemon; stdio.py: one server's client; http.py: the endpoint;
config.py: the configurations (also read by the host's tools/mcp_inside.py)."""
