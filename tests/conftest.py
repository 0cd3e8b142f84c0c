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
    # Whatever the suite sent it, the server never failed unexpectedly (bad input is a 4xx, not a
    # traceback in its log).
    failures = tracebacks(srv.log.read_text(errors="replace"))
    shutil.rmtree(home, ignore_errors=True)
    assert not left, f"the test server left sandbox resources behind: {left}"
    assert not failures, "the test server logged errors with tracebacks:\n\n" + "\n\n".join(failures)


def tracebacks(log: str) -> list[str]:
    """Each traceback in a server log, with the line that introduced it."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")), i)
            found.append("\n".join(lines[max(0, i - 1):end + 1])[-3000:])
    return found


@pytest.fixture
def e2b_env(server, monkeypatch):
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    return server


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}; server: {' '.join(server_cmd())}"
