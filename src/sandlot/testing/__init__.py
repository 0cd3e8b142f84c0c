"""sandlot.testing: a sandlot server for your own tests (a pytest plugin; see docs/testing.md).

Enable it in a conftest.py with ``pytest_plugins = ["sandlot.testing"]`` (or ``pytest -p
sandlot.testing``). Then:

- ``sandlot_server`` (session): a `SandlotServer` started for the test session on a free loopback
  port, with its own API key: ``.url``, ``.api_key``, ``.e2b_env`` (the official SDKs' environment),
  ``.env`` (that and sandlot's own). Stopped at the end of the session, with its sandboxes.
- ``sandlot_env``: the environment of a test set to ``sandlot_server.env``, so ``e2b.Sandbox.create()``
  and ``sandlot.Sandbox.create()`` reach it with no arguments.

ini options: ``sandlot_templates`` (templates built before the server starts and kept warm; default
``base`` as root, ``host`` otherwise) and ``sandlot_pool_size`` (warm sandboxes per template, 1).
Outside pytest, ``with serve() as server:`` does the same.
"""

from __future__ import annotations

import pytest

from ._server import SandlotServer, default_templates, serve

__all__ = ["SandlotServer", "sandlot_env", "sandlot_server", "serve"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("sandlot_templates", "sandlot.testing: templates built before the server starts and kept "
                  "warm (default: base as root, host otherwise)", type="args")
    parser.addini("sandlot_pool_size", "sandlot.testing: warm sandboxes per template", default="1")


@pytest.fixture(scope="session")
def sandlot_server(pytestconfig: pytest.Config):
    """A sandlot server for the test session (see the module docstring)."""
    templates = pytestconfig.getini("sandlot_templates") or default_templates()
    with serve(templates, pool_size=int(pytestconfig.getini("sandlot_pool_size"))) as server:
        yield server


@pytest.fixture
def sandlot_env(sandlot_server: SandlotServer, monkeypatch: pytest.MonkeyPatch) -> SandlotServer:
    """This test's environment points both SDKs at `sandlot_server`."""
    for key, value in sandlot_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("E2B_DEBUG", raising=False)  # debug mode sends the SDK to localhost ports instead
    return sandlot_server
