"""`sandlot` with the MCP endpoint mounted in `serve` at /mcp and KeyAuth covering it: the wiring the
lead adds to server/app.py and server/auth.py, applied here from outside so the tests run a real
server with it (used as SANDLOT_SERVER_CMD by test_mcp_server.py)."""

from sandlot.server import app as server_app
from sandlot.server import auth
from sandlot.tools.mcp_server import mount

if "/mcp" not in auth.CONTROL_PLANE_PREFIXES:
    auth.CONTROL_PLANE_PREFIXES += ("/mcp",)
_build_app = server_app.build_app


def build_app(config):
    app = _build_app(config)
    mount(app)
    return app


server_app.build_app = build_app

from sandlot.cli.main import app  # noqa: E402

app(prog_name="sandlot")
