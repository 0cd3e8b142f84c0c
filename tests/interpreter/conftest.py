"""Fixtures for the code-interpreter suite: the official `e2b-code-interpreter` SDK (Sandbox,
AsyncSandbox) against a real `sandlot serve`.

The session `server` fixture (tests/conftest.py) starts the server; here the SDK is pointed at it
through its own environment variables (e2b-protocol.md §2.1, mode A), one module at a time so
the variables never leak into other test directories. Sandboxes come from the SDK's default
template (`code-interpreter-v1`, which sandlot maps to `code-interpreter`).

Not in tests/e2b: that directory also runs from a venv with an old `e2b` that cannot install
`e2b-code-interpreter`.
"""

from __future__ import annotations

import pytest
from e2b_code_interpreter import Sandbox
from interp_support import E2B_VERSION, SDK_VERSION, kill_quietly


def pytest_report_header(config):
    return f"e2b-code-interpreter SDK {SDK_VERSION} (e2b {E2B_VERSION})"


@pytest.fixture(scope="module", autouse=True)
def sdk_env(server):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        mp.delenv("E2B_DEBUG", raising=False)
        yield server


@pytest.fixture(scope="module")
def sandbox(sdk_env):
    """One sandbox shared by the tests of a module; tests that keep state use their own context."""
    sbx = Sandbox.create(timeout=900, metadata={"suite": "interpreter-shared"})
    yield sbx
    kill_quietly(sbx)


@pytest.fixture
def make_sandbox(sdk_env):
    """Create sandboxes with the SDK; every one is killed when the test ends."""
    created = []

    def make(**kwargs):
        kwargs.setdefault("timeout", 300)
        sbx = Sandbox.create(**kwargs)
        created.append(sbx)
        return sbx

    yield make
    for sbx in created:
        kill_quietly(sbx)


@pytest.fixture
def ctx(sandbox):
    """A fresh python context in the shared sandbox, removed afterwards."""
    context = sandbox.create_code_context()
    yield context
    try:
        sandbox.remove_code_context(context)
    except Exception:  # noqa: BLE001, S110 - the test may have removed it (or broken the driver)
        pass
