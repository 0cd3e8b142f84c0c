"""Fixtures for the rootless runtime's tests: a real server run by an unprivileged user, driven over
REST and through the official e2b SDK."""

from __future__ import annotations

import pytest
from rootless_support import Account, remove_home, start_rootless_server
from support import rest_client, sandbox_factory, sdk_environment


@pytest.fixture(scope="session")
def account():
    acct = Account()
    if error := acct.userns_error():
        pytest.skip(f"user namespaces are unavailable to unprivileged users here: {error}")
    acct.interpreter  # noqa: B018 - fail here, once, if no python fits
    return acct


@pytest.fixture(scope="module")
def rl_server(account):
    home = account.make_home()
    server = start_rootless_server(account, home)
    with sdk_environment(server):
        yield server
    server.stop()
    remove_home(home)


@pytest.fixture
def api(rl_server):
    with rest_client(rl_server, timeout=60) as client:
        yield client


@pytest.fixture
def make_sandbox(rl_server):
    with sandbox_factory(rl_server, "host") as make:
        yield make
