"""Fixtures for the E2B compatibility suite: the official `e2b` SDK against a real `sandlot serve`.

The session `server` fixture (tests/conftest.py) starts the server; here the SDK is pointed at it
through its own environment variables (e2b-protocol.md §2.1, mode A), one module at a time so
the variables never leak into other test directories.
"""

from __future__ import annotations

import pytest
from e2b import Sandbox
from e2b_support import SDK_VERSION, kill_quietly, unique


def pytest_report_header(config):
    return f"e2b SDK {SDK_VERSION}"


@pytest.fixture(scope="module", autouse=True)
def sdk_env(server):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        mp.delenv("E2B_DEBUG", raising=False)
        yield server


@pytest.fixture(scope="module")
def sandbox(sdk_env):
    """One sandbox shared by the tests of a module (tests use their own directories in it)."""
    sbx = Sandbox.create(timeout=900, metadata={"suite": "e2b-shared"})
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
def workdir(sandbox):
    """A fresh directory in the shared sandbox, owned by the default user."""
    path = f"/home/user/{unique('w')}"
    assert sandbox.files.make_dir(path) is True
    return path
