"""Package tests run on both SDK surfaces (`Sandbox` and `AsyncSandbox`), as in tests/client: tests
are async and go through `maybe()`, which awaits what the async surface returns."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from package_helpers import maybe

from sandlot import AsyncSandbox, Sandbox

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    # one event loop for the session's async fixtures and these tests
    for item in items:
        if Path(item.fspath).parent == HERE and inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"))


@pytest.fixture(params=["sync", "async"])
def surface(request) -> str:
    return request.param


@pytest.fixture
def api(server, surface):
    cls = Sandbox if surface == "sync" else AsyncSandbox
    return cls, {"api_url": server.url, "api_key": server.api_key}


@pytest.fixture
async def sandbox(api):
    """A sandbox from the `base` template: no network, no extra Python packages."""
    cls, conn = api
    sbx = await maybe(cls.create(template="base", **conn))
    yield sbx
    await maybe(sbx.kill())
    await maybe(sbx.close())
