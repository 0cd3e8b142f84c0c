"""SDK tests run every scenario on both surfaces: `Sandbox` (blocking) and `AsyncSandbox`.

Tests are async and call the API through `sdk_helpers.maybe()`, which awaits what the async surface
returns and passes the blocking surface's results through, so one test body covers both.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from sandlot import AsyncSandbox, Sandbox
from sdk_helpers import maybe

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
    """The class under test and the keyword arguments that point it at the test server."""
    cls = Sandbox if surface == "sync" else AsyncSandbox
    return cls, {"api_url": server.url, "api_key": server.api_key}


@pytest.fixture
async def sandbox(api):
    cls, conn = api
    sbx = await maybe(cls.create(**conn))
    yield sbx
    await maybe(sbx.kill())
    await maybe(sbx.close())
