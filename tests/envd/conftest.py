"""Fixtures: the real agent on the host (unsandboxed), the envd front door served by uvicorn in a
thread, and the official e2b SDK pointed at it with E2B_SANDBOX_URL (docs/e2b.md §1.1).

SDK sandbox objects come from `Sandbox.connect()`, answered by a stand-in for the control plane's
`POST /v2/sandboxes/{id}/connect` (the real control plane is another component; the end-to-end
tests drive it). Two sandboxes with different access tokens share the one agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import uvicorn
from agent_support import Agent, start_agent
from e2b import AsyncSandbox, Sandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandlot.server.agent_client import AgentClient
from sandlot.server.envd import envd_routes
from sandlot.server.envd.routing import Closing
from envd_support import MAX_UPLOAD, SANDBOX_ENVS

if os.geteuid() != 0:
    pytest.skip("the envd tests switch users: run them as root", allow_module_level=True)

API_KEY = "e2b_" + "0" * 40
ENVD_VERSION = "0.6.4"


@dataclass
class FakeSandbox:
    """What the control plane hands the front door (SandboxHandle)."""

    id: str
    access_token: str | None
    default_user: str
    agent: AgentClient
    closed: Closing = field(default_factory=Closing)
    output_rate: None = None  # the relay's throttle: none for these wire tests


class Lookup:
    def __init__(self):
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.paused: dict[str, FakeSandbox] = {}

    def get_running(self, sandbox_id):
        return self.sandboxes.get(sandbox_id)

    def running(self):
        return list(self.sandboxes.values())


@dataclass
class Envd:
    url: str
    lookup: Lookup
    loop: asyncio.AbstractEventLoop
    agent: AgentClient
    user: pwd.struct_passwd

    def add(self, sandbox_id: str, token: str | None) -> FakeSandbox:
        sandbox = FakeSandbox(sandbox_id, token, self.user.pw_name, self.agent)
        self.lookup.sandboxes[sandbox_id] = sandbox
        return sandbox

    def kill(self, sandbox_id: str) -> FakeSandbox:
        """What the control plane does on kill or pause: forget the sandbox, end its streams.

        Returns the sandbox with a fresh `closed` event, as a pause leaves it for a later resume."""
        sandbox = self.lookup.sandboxes.pop(sandbox_id)
        self.loop.call_soon_threadsafe(sandbox.closed.set)
        return dataclasses.replace(sandbox, closed=Closing())

    def connect(self, sandbox_id: str, cls=Sandbox):
        return cls.connect(sandbox_id, api_key=API_KEY, api_url=self.url, sandbox_url=self.url)


def _control_plane_connect(lookup: Lookup):
    async def connect(request: Request):
        sandbox = lookup.get_running(request.path_params["sandbox_id"])
        if sandbox is None:
            return JSONResponse({"code": 404, "message": "sandbox not found"}, status_code=404)
        return JSONResponse({"templateID": "base", "sandboxID": sandbox.id, "clientID": "local",
                             "envdVersion": ENVD_VERSION, "envdAccessToken": sandbox.access_token,
                             "domain": None})

    return Route("/v2/sandboxes/{sandbox_id}/connect", connect, methods=["POST"])


@pytest.fixture(scope="session")
def agent(base_dir, user) -> Agent:
    """The one agent both sandboxes share, run as in a sandbox (agent_support.start_agent)."""
    agent = start_agent(base_dir, envs=SANDBOX_ENVS, default_user=user.pw_name, allow_sudo=True)
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def envd(agent, user) -> Envd:
    lookup = Lookup()
    app = Starlette(routes=[*envd_routes(lookup, max_upload_bytes=MAX_UPLOAD), _control_plane_connect(lookup)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    loop = asyncio.new_event_loop()

    def serve():
        loop.run_until_complete(server.serve(sockets=[sock]))
        leftovers = asyncio.all_tasks(loop)  # watchers of sandboxes "killed" while the agent lives on
        for task in leftovers:
            task.cancel()
        if leftovers:  # gather() of nothing looks for a current loop, which this thread has not
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    host, port = sock.getsockname()
    yield Envd(f"http://{host}:{port}", lookup, loop, agent.client, user)
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def sandbox(envd) -> Sandbox:
    """The main sandbox, with an access token, as the sync SDK sees it."""
    envd.add("sbxmain", "token-main")
    return envd.connect("sbxmain")


@pytest.fixture
async def async_sandbox(envd, sandbox) -> AsyncSandbox:
    return await envd.connect("sbxmain", AsyncSandbox)


@pytest.fixture
def home(user) -> str:
    return user.pw_dir


@pytest.fixture
def workdir(sandbox, home):
    """A fresh directory in the default user's home, removed afterwards."""
    path = f"{home}/t-{uuid.uuid4().hex[:8]}"
    sandbox.files.make_dir(path)
    yield path
    sandbox.files.remove(path)
