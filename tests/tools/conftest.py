"""Fixtures for the tool layer: a blocking sandbox on the session's test server, and its toolset."""

from __future__ import annotations

import pytest

from sandlot import Sandbox


@pytest.fixture
def conn(server):
    return {"api_url": server.url, "api_key": server.api_key}


@pytest.fixture
def sandbox(conn):
    with Sandbox.create(**conn) as sbx:
        yield sbx
