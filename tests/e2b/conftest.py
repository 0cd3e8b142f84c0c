"""The E2B compatibility suite: the official `e2b` SDK against a real `sandlot serve`.

The shared fixtures (tests/conftest.py) start the server and make sandboxes of `sdk_class`; the
SDK's environment points at the server for every module here.
"""

from __future__ import annotations

import pytest
from e2b import Sandbox
from e2b_support import SDK_VERSION
from support import unique


def pytest_report_header(config):
    return f"e2b SDK {SDK_VERSION}"


@pytest.fixture(scope="session")
def sdk_class():
    return Sandbox


@pytest.fixture(scope="module", autouse=True)
def _sdk_env(sdk_env):
    return sdk_env


@pytest.fixture
def workdir(sandbox):
    """A fresh directory in the shared sandbox, owned by the default user."""
    path = f"/home/user/{unique('w')}"
    assert sandbox.files.make_dir(path) is True
    return path
