"""Python package tools. Installs go through the SDK's packages API: the server fetches the wheels
and the sandbox, which has no network, installs them from a copy."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .._context import ToolContext
from .._result import TextContent, ToolResult
from .._tool import tool

Package = Annotated[str, "Package name as on PyPI, e.g. requests"]


def _installed(packages, what: str) -> ToolResult:
    listed = [f"{p.name}=={p.version}" for p in packages]
    text = f"{what}: " + ", ".join(listed) if listed else f"Nothing to do: already {what.lower()}"
    return ToolResult([TextContent(text)], data={"packages": [{"name": p.name, "version": p.version}
                                                              for p in packages]})


@tool(category="packages")
async def install_pip_package(ctx: ToolContext, package: Package,
                              version: Annotated[str | None, "Exact version to install"] = None,
                              upgrade: Annotated[bool, "Fetch the newest matching release"] = False) -> ToolResult:
    """Install a Python package (and its dependencies) into the sandbox."""
    return _installed(await ctx.sandbox.packages.install(package, version=version, upgrade=upgrade), "Installed")


@tool(category="packages")
async def install_pip_packages(ctx: ToolContext, packages: Annotated[list[str], Field(
        description="Requirements such as numpy, pandas>=2, rich[jupyter]", min_length=1)]) -> ToolResult:
    """Install several Python packages in one go."""
    return _installed(await ctx.sandbox.packages.install_many(packages), "Installed")


@tool(category="packages")
async def uninstall_pip_package(ctx: ToolContext, package: Package) -> ToolResult:
    """Uninstall a Python package from the sandbox."""
    return _installed(await ctx.sandbox.packages.uninstall(package), "Uninstalled")


@tool(category="packages")
async def list_installed_packages(ctx: ToolContext) -> ToolResult:
    """List the Python packages installed in the sandbox (name==version)."""
    packages = await ctx.sandbox.packages.list()
    text, _ = await ctx.limit("\n".join(f"{p.name}=={p.version}" for p in packages) or "No packages")
    return ToolResult([TextContent(text)], data={"count": len(packages)})


@tool(category="packages")
async def check_package_installed(ctx: ToolContext, package: Package) -> ToolResult:
    """Whether a Python package is installed in the sandbox."""
    installed = await ctx.sandbox.packages.is_installed(package)
    return ToolResult([TextContent(f"{package} is {'installed' if installed else 'not installed'}")],
                      data={"package": package, "installed": installed})
