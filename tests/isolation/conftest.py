from __future__ import annotations

import pytest
from support import sandbox_factory

from sandlot.runtimes import cgroups
from sandlot.runtimes.namespace import mount_root


@pytest.fixture
def make_sandbox(sdk_env):
    with sandbox_factory(sdk_env, "base") as make:
        yield make


@pytest.fixture
def host_cgroup(server):
    """cgroup(sandbox_id): the sandbox's cgroups as the host sees them (the test server's group only)."""
    version = cgroups.detect()
    if version is None:
        pytest.skip("no cgroups on this host")
    group = "sandlot-" + mount_root(server.home).name
    return lambda sandbox_id: cgroups.SandboxCgroup(sandbox_id, version, group)
