"""`sandbox.packages`: Python packages in the sandbox, installed without giving it network access."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from packaging.utils import canonicalize_name

from ._http import Transport, sandbox_path
from ._models import Package

INSTALL_TIMEOUT = 600.0  # seconds; a first install may download (on the server) and build large wheels


def _names(name_or_names: str | Iterable[str]) -> list[str]:
    return [name_or_names] if isinstance(name_or_names, str) else list(name_or_names)


class AsyncPackages:
    """Python packages of the sandbox (`sandbox.packages`), installed system-wide with pip, so every
    command and the code interpreter see them.

        await sandbox.packages.install("tabulate")
        await sandbox.packages.install("six", version="1.16.0")
        await sandbox.packages.install_many(["tabulate", "six>=1.16"], upgrade=True)
        await sandbox.files.write("requirements.txt", "six==1.16.0\\n")
        await sandbox.packages.install_requirements("requirements.txt")     # a file in the sandbox
        assert await sandbox.packages.is_installed("tabulate")
        await sandbox.packages.uninstall(["tabulate", "six"])

    The sandbox stays offline: the server fetches the wheels (binary only) through its own package
    index and the sandbox installs them from a copy. Requirements are names with optional extras,
    versions and markers; URLs, paths and pip options are refused (InvalidArgument). A failed
    install (unknown package, conflicting versions) raises InvalidArgument carrying pip's message and
    leaves the sandbox's packages as they were.
    """

    def __init__(self, transport: Transport, sandbox_id: str):
        """Internal: use `sandbox.packages`."""
        self._transport = transport
        self._path = sandbox_path(sandbox_id, "/packages")

    async def install(self, name: str, version: str | None = None, upgrade: bool = False,
                      timeout: float | None = INSTALL_TIMEOUT) -> list[Package]:
        """Install one package (`version` pins it exactly). Returns the packages this call installed
        or changed, dependencies included; empty if it was already there. `upgrade=True` fetches
        the newest matching release instead of what the server's cache holds."""
        return await self.install_many([f"{name}=={version}" if version else name], upgrade, timeout)

    async def install_many(self, names: Iterable[str], upgrade: bool = False,
                           timeout: float | None = INSTALL_TIMEOUT) -> list[Package]:
        """Install several requirements (`"pkg"`, `"pkg==1.2"`, `"pkg[extra]>=1"`) in one resolution."""
        return await self._install({"packages": _names(names), "upgrade": upgrade}, timeout)

    async def install_requirements(self, path: str, upgrade: bool = False,
                                   timeout: float | None = INSTALL_TIMEOUT) -> list[Package]:
        """Install what a requirements.txt *inside the sandbox* lists (at most 1 MiB; relative paths
        are relative to the default user's home). Options such as `-r` or `--index-url` are refused."""
        return await self._install({"requirements": path, "upgrade": upgrade}, timeout)

    async def _install(self, body: dict[str, Any], timeout: float | None) -> list[Package]:
        response = await self._transport.api("POST", self._path, json=body, timeout=timeout or None)
        return [Package.from_json(p) for p in response.json()["installed"]]

    async def uninstall(self, name_or_names: str | Iterable[str],
                        timeout: float | None = INSTALL_TIMEOUT) -> list[Package]:
        """Uninstall packages by name; returns what was removed (names not installed are skipped)."""
        response = await self._transport.api("POST", self._path + "/uninstall",
                                             json={"packages": _names(name_or_names)}, timeout=timeout or None)
        return [Package.from_json(p) for p in response.json()["uninstalled"]]

    async def list(self, request_timeout: float | None = None) -> list[Package]:
        """Every Python package installed in the sandbox (as its root sees them), sorted by name."""
        response = await self._transport.api("GET", self._path, request_timeout=request_timeout)
        return [Package.from_json(p) for p in response.json()]

    async def is_installed(self, name: str, request_timeout: float | None = None) -> bool:
        """Whether a package of that name is installed (`Foo_Bar` and `foo-bar` are the same)."""
        wanted = canonicalize_name(name)
        return any(canonicalize_name(p.name) == wanted for p in await self.list(request_timeout))
