"""`client/` stands alone: it depends on the wire protocol, the error tree and the shared value
types, never on the server side (server, runtimes, templates, cli, agent, the embedded server)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sandlot

CLIENT = Path(sandlot.__file__).parent / "client"
ALLOWED = ("sandlot.client", "sandlot.protocol", "sandlot._exceptions", "sandlot.limits")


def _allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED)


def package_of(path: Path) -> str:
    return ".".join(("sandlot", *path.relative_to(CLIENT.parent).parts[:-1]))


def sandlot_imports(source: str, package: str) -> set[str]:
    """Every sandlot module a module of `package` imports, relative imports resolved (lazy ones
    included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sandlot")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != "sandlot":
                continue
            if node.module is None or module in ("sandlot", "sandlot.client"):  # `from .. import x`
                found.update(f"{module}.{a.name}" for a in node.names)
            else:
                found.add(module)
    return found


def test_client_modules_import_only_the_protocol_errors_and_shared_types():
    modules = sorted(CLIENT.rglob("*.py"))
    assert len(modules) > 5
    bad = {f"{p.relative_to(CLIENT)}: {m}" for p in modules
           for m in sandlot_imports(p.read_text(), package_of(p)) if not _allowed(m)}
    assert not bad, f"client/ reaches outside its allowed dependencies: {sorted(bad)}"


def test_the_checker_sees_relative_and_lazy_imports():
    # the rule above must be able to fail: a client module importing the server side
    source = ("import sandlot.cli.main\nfrom .._exceptions import NotFound\n"
              "def f():\n    from ..server import config\n    from .. import runtimes\n    from . import _http\n")
    assert sandlot_imports(source, "sandlot.client") == {
        "sandlot.cli.main", "sandlot._exceptions", "sandlot.server", "sandlot.runtimes", "sandlot.client._http"}
    assert package_of(CLIENT / "_sync" / "sandbox.py") == "sandlot.client._sync"


def test_using_the_sdk_loads_no_server_code():
    code = ("import sys, sandlot\n"
            "from sandlot import Sandbox, AsyncSandbox\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('sandlot')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "sandlot.client" in loaded
    outside = [m for m in loaded if m != "sandlot" and not _allowed(m)]
    assert not outside, outside
