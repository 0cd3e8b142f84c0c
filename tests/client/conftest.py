"""SDK tests run every scenario on both surfaces: `Sandbox` (blocking) and `AsyncSandbox`.

Tests are async and call the API through `sdk_support.maybe()`, which awaits what the async surface
returns and passes the blocking surface's results through, so one test body covers both. `surface`
and `sdk` (the class under test and its connection arguments) are shared fixtures (tests/conftest.py).
"""

from __future__ import annotations

import pytest
from sdk_support import maybe


@pytest.fixture
async def sandbox(sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(**conn))
    yield sbx
    await maybe(sbx.kill())
    await maybe(sbx.close())
