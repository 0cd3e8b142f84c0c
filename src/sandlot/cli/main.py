"""`sandlot` command line: one module per command group, thin over the SDK and the server."""

from __future__ import annotations

import typer

from . import code, keys, mcp, packages, sandboxes, serve, snapshot, template

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="sandlot: self-hosted sandboxes for AI agents.")
app.command()(serve.serve)
app.command()(mcp.mcp)
app.add_typer(keys.app, name="keys")
app.add_typer(template.app, name="template")
app.add_typer(packages.app, name="packages")
app.add_typer(snapshot.app, name="snapshot")
sandboxes.register(app)
code.register(app)

if __name__ == "__main__":
    app()
