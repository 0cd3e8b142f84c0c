"""Fixtures: the real agent in a subprocess on the host (not sandboxed), driven through AgentClient.
Runs as root; a temporary account (the shared `user` fixture) stands in for the sandbox's ``user``."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from agent_support import Agent, Result, collect, start_agent

from sandlot import SandlotError
from sandlot.server.agent_client import AgentClient

if os.geteuid() != 0:
    pytest.skip("the agent tests switch users: run them as root", allow_module_level=True)


@pytest.fixture(scope="session")
def make_agent(base_dir, user):
    """Start an extra agent with some config changed; all are stopped at the end of the session."""
    agents = []

    def make(**config) -> Agent:
        config = {"envs": {"SANDBOX_WIDE": "yes"}, "default_user": user.pw_name, "allow_sudo": True, **config}
        agents.append(start_agent(base_dir, **config))
        return agents[-1]

    yield make
    for agent in agents:
        agent.stop()


@pytest.fixture(scope="session")
def agent(make_agent) -> Agent:
    return make_agent()


@pytest.fixture
def client(agent) -> AgentClient:
    return agent.client


@pytest.fixture(autouse=True)
async def no_leftover_processes(agent):
    """Whatever a test started through the session's agent and left running is killed after it."""
    yield
    for proc in await agent.client.list_processes():
        try:
            await agent.client.send_signal(signal.SIGKILL, pid=proc["pid"])
        except SandlotError:
            pass  # ended meanwhile


@pytest.fixture
def home(user) -> Path:
    return Path(user.pw_dir)


@pytest.fixture
def run(client):
    """``await run("shell code", **start_kwargs)`` -> Result, through bash -c like the front door."""

    async def run(code: str, **kwargs) -> Result:
        return await asyncio.wait_for(collect(client.start("/bin/bash", ["-c", code], **kwargs)), 20)

    return run
