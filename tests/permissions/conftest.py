"""Fixtures for path permissions: a project tree, a codebase of it on the test server, sandboxes on
it (probe.py in their /tmp). Helpers: perm_helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from perm_helpers import PROBE, write_project

from sandlot import Codebase, Sandbox

if os.geteuid() != 0:
    pytest.skip("workspaces need a server run as root", allow_module_level=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def conn(server) -> dict:
    return {"api_url": server.url, "api_key": server.api_key}


@pytest.fixture(scope="module")
def codebase(conn, project):
    cb = Codebase.create("permissions-tests", **conn)
    cb.upload_dir(project)
    yield cb
    cb.delete()


@pytest.fixture(scope="module")
def open_sandbox(conn, codebase):
    """make(**create kwargs) -> a sandbox on the codebase, killed at the end of the module."""
    made = []

    def make(**kwargs) -> Sandbox:
        sandbox = Sandbox.create(codebase=kwargs.pop("codebase", codebase), **conn, **kwargs)
        made.append(sandbox)
        sandbox.files.write("/tmp/probe.py", PROBE)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.kill()


def pytest_collection_modifyitems(items):
    # async tests here run on the session's event loop, as the SDK tests do
    import inspect

    for item in items:
        if Path(item.fspath).parent == Path(__file__).parent and \
                inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"))
