"""The code-interpreter suite: the official `e2b-code-interpreter` SDK (Sandbox, AsyncSandbox)
against a real `sandlot serve`.

The shared fixtures (tests/conftest.py) start the server and make sandboxes of `sdk_class`, from the
SDK's default template (`code-interpreter-v1`, which sandlot maps to `code-interpreter`); the SDK's
environment points at the server for every module here.

Not in tests/e2b: that directory also runs from a venv with an old `e2b` that cannot install
`e2b-code-interpreter`.
"""

from __future__ import annotations

import pytest
from e2b_code_interpreter import Sandbox
from interp_support import E2B_VERSION, SDK_VERSION


def pytest_report_header(config):
    return f"e2b-code-interpreter SDK {SDK_VERSION} (e2b {E2B_VERSION})"


@pytest.fixture(scope="session")
def sdk_class():
    return Sandbox


@pytest.fixture(scope="module", autouse=True)
def _sdk_env(sdk_env):
    return sdk_env


@pytest.fixture
def ctx(sandbox):
    """A fresh python context in the shared sandbox, removed afterwards."""
    context = sandbox.create_code_context()
    yield context
    try:
        sandbox.remove_code_context(context)
    except Exception:  # noqa: BLE001, S110 - the test may have removed it (or broken the driver)
        pass
