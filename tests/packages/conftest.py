"""Package tests run on both SDK surfaces (`Sandbox` and `AsyncSandbox`), as in tests/client: tests
are async and go through `maybe()`, which awaits what the async surface returns."""

from __future__ import annotations

import pytest
from sdk_support import maybe


@pytest.fixture
async def sandbox(sdk):
    """A sandbox from the `base` template: no network, no extra Python packages."""
    cls, conn = sdk
    sbx = await maybe(cls.create(template="base", **conn))
    yield sbx
    await maybe(sbx.kill())
    await maybe(sbx.close())
