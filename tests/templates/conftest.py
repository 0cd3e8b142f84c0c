"""Shared by the template tests.

The `base` template takes about a minute to build, so its tests build it once into a data home that
outlives the run: SANDLOT_TEST_HOME (default /var/tmp/sandlot-test-home). Later runs reuse it and
rebuild only when the recipe changed; delete that directory to start cold.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TEST_HOME = Path(os.environ.get("SANDLOT_TEST_HOME", "/var/tmp/sandlot-test-home"))


@pytest.fixture(scope="session")
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("building templates needs root")


@pytest.fixture(scope="session")
def test_home() -> Path:
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    return TEST_HOME
