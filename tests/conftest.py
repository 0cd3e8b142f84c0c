"""The fixtures the test suites share (support.py starts the servers they use).

Imports nothing from sandlot at module level: tests/e2b also runs from a venv that holds only another
release of the official SDK (./dev test). Fixtures that need sandlot import it when they run.

- `server`: the session's `sandlot serve`; when it stops, nothing of its sandboxes may be left on
  the host and its log may hold no traceback. `api` (REST) and `cli` talk to it.
- The official SDKs (tests/e2b, tests/interpreter): `sdk_env` points them at the server; `sandbox`
  (one per module) and `make_sandbox` make sandboxes of the suite's `sdk_class`.
- sandlot's own SDK (tests/client, tests/packages): every test runs on both surfaces (`surface`);
  `sdk` is the class under test and the arguments that reach the server. Those suites' async tests
  share the session's event loop (`SESSION_LOOP_SUITES`).
- The agent run on the host (tests/agent, tests/envd): `base_dir` and the account `user`.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from support import (
    checked_server,
    kill_quietly,
    rest_client,
    sdk_environment,
    server_cmd,
    throwaway_user,
)

# Tests make trees as deep as sandlot allows (1000 directories). One a failure leaves behind is
# removed by a later session's clean-up of old temp dirs (shutil.rmtree recurses, ~3 frames a
# level), which at Python's default limit ends that whole session in a RecursionError.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

# Suites whose async tests run on the session's event loop, like their session-scoped async fixtures
SESSION_LOOP_SUITES = ("client", "packages")


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}; server: {' '.join(server_cmd())}"


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.parent.name in SESSION_LOOP_SUITES and inspect.iscoroutinefunction(
                getattr(item, "function", None)):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"))


# ---- the session's server ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def server():
    with checked_server() as srv:
        yield srv


@pytest.fixture
def api(server):
    """An HTTP client for the server's REST API, with its API key."""
    with rest_client(server) as client:
        yield client


@pytest.fixture
def cli(server):
    """cli(*args, input=None): the `sandlot` CLI run in-process against the server."""
    from typer.testing import CliRunner

    from sandlot.cli.main import app

    runner = CliRunner()
    env = {"SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}

    def invoke(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, list(args), env=env, input=input)

    return invoke


# ---- the official SDKs (the suite's conftest provides `sdk_class`) -------------------------------

@pytest.fixture(scope="module")
def sdk_env(server):
    """The official SDKs' environment set to the server, one module at a time so the variables never
    leak into other test directories."""
    with sdk_environment(server):
        yield server


@pytest.fixture(scope="module")
def sandbox(request, sdk_env, sdk_class):
    """One sandbox shared by the tests of a module (tests use their own directories or contexts in
    it), tagged with its suite ("e2b-shared", "interpreter-shared")."""
    sbx = sdk_class.create(timeout=900, metadata={"suite": f"{request.path.parent.name}-shared"})
    yield sbx
    kill_quietly(sbx)


@pytest.fixture
def make_sandbox(sdk_env, sdk_class):
    """Create sandboxes with the SDK; every one is killed when the test ends."""
    created = []

    def make(**kwargs):
        kwargs.setdefault("timeout", 300)
        sbx = sdk_class.create(**kwargs)
        created.append(sbx)
        return sbx

    yield make
    for sbx in created:
        kill_quietly(sbx)


# ---- sandlot's own SDK, on both surfaces ---------------------------------------------------------

@pytest.fixture(params=["sync", "async"])
def surface(request) -> str:
    return request.param


@pytest.fixture
def sdk(server, surface):
    """The class under test (`Sandbox` or `AsyncSandbox`) and the keyword arguments that point it at
    the test server."""
    from sandlot import AsyncSandbox, Sandbox

    cls = Sandbox if surface == "sync" else AsyncSandbox
    return cls, {"api_url": server.url, "api_key": server.api_key}


# ---- the agent on the host -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def base_dir():
    """A directory for agents run on the host (their sockets, configs and logs)."""
    d = Path(tempfile.mkdtemp(prefix="sandlot-agent-test-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def user(base_dir):
    """A throwaway account playing the sandbox's ``user`` (uid != 0, own home, bash)."""
    with throwaway_user("slt", base_dir / "home") as pw:
        yield pw
