from __future__ import annotations

import pytest
from support import sandbox_factory


@pytest.fixture
def make_sandbox(e2b_env):
    with sandbox_factory(e2b_env, "base") as make:
        yield make
