"""Shared fixtures (see support.py for the server they start)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from support import leftovers, server_cmd, start_server


@pytest.fixture(scope="session")
def server():
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-"))
    srv = start_server(home)
    yield srv
    srv.stop()
    # Every sandbox the suite made must be gone with the server: no layer, no mount left.
    left = leftovers(home)
    shutil.rmtree(home, ignore_errors=True)
    assert not left, f"the test server left sandbox resources behind: {left}"


@pytest.fixture
def e2b_env(server, monkeypatch):
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    return server


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}; server: {' '.join(server_cmd())}"
