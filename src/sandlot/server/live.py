"""A sandbox as the control plane holds it (LiveSandbox: its record, runtime handle, agent client,
code contexts, usage samples), what a create asks for (CreateRequest), and the tables of them as the
service's parts look sandboxes up (Sandboxes). The service (service.py) and its parts (pools,
reaper, usage, networks, lifecycle, snapshots) and the routes share them; the parts import them
from here, never from service.py, which composes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from .. import _exceptions as E
from ..runtimes.cgroups import Usage
from ..runtimes.interface import RuntimeSandbox
from ..runtimes.policy import Limits, NetworkPolicy, SecurityPolicy, Workspace
from ..templates.spec import Template
from .agent_client import AgentClient
from .code_contexts import KernelSession
from .envd.routing import Closing
from .store import SandboxRecord
from .teams import DEFAULT_TEAM
from .throttle import ByteRate

log = logging.getLogger("sandlot.service")

ENVD_VERSION = "0.6.4"  # the envd feature level we implement (docs/e2b.md §3.14)
METRICS_KEPT = 720  # an hour of samples per sandbox (usage.py)


@dataclass
class LiveSandbox:
    """A sandbox the control plane can talk to (also the envd front door's SandboxHandle)."""

    record: SandboxRecord
    rt: RuntimeSandbox | None  # None while paused in filesystem mode (lifecycle.py): nothing runs
    agent: AgentClient | None
    closed: Closing = field(default_factory=Closing)
    default_user: str = "user"
    kernels: KernelSession | None = None  # code contexts, if the template has kernels
    samples: deque = field(default_factory=lambda: deque(maxlen=METRICS_KEPT))  # usage.py
    usage: Usage | None = None  # its cgroup's last reading (usage.py)
    holding: tuple | None = None  # ((state, paused with its files only), quotas.Holding): service._holdings
    output_rate: ByteRate | None = None  # command output relayed to clients (throttle.py); None: unbounded
    disk: tuple[float, int] | None = None  # (fresh until, bytes): the last reading of its disk use
    disk_cpu_ns: int = -1  # the sandbox's CPU time when its disk was last walked
    walking: asyncio.Future | None = None  # the walk taking the next one

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def team(self) -> str:
        return self.record.team

    @property
    def access_token(self) -> str | None:
        return self.record.access_token

    @property
    def envs(self) -> dict[str, str]:
        return self.record.envs


@dataclass
class CreateRequest:
    template: str
    timeout: int
    metadata: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    auto_pause: bool = False
    secure: bool = True
    # lifecycle (lifecycle.py): what a pause on timeout keeps, whether requests resume it
    auto_pause_mode: str = "full"
    auto_resume: bool = False
    stack: Template | None = None  # a fork's children: this stack instead of the template's
    volume_mounts: list[dict] = field(default_factory=list)  # [{"name", "path"}] (volumes.py)
    team: str = DEFAULT_TEAM  # the creating key's (teams.py)
    # issue 13: a codebase with path permissions, and Alphora's security knobs
    workspace: Workspace | None = None
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    egress: NetworkPolicy | None = None  # None: no network, only loopback
    network: dict = field(default_factory=dict)  # ingress settings as the API took them (issue 12)
    iam: dict = field(default_factory=dict)  # workload identity tokens by name (identity.py)


class Sandboxes(Protocol):
    """The sandboxes a server holds, as the service's parts and the routes look them up (the service
    is the one that holds them)."""

    live: dict[str, LiveSandbox]  # running, by id
    paused: dict[str, LiveSandbox]

    def known(self, sandbox_id: str, table: dict[str, LiveSandbox] | None = None) -> LiveSandbox:
        """The sandbox from `table` (default: running or paused), or NotFound."""
        ...

    def record(self, sandbox_id: str) -> SandboxRecord: ...

    def get_running(self, sandbox_id: str) -> LiveSandbox | None: ...


def check_timeout(timeout: int, maximum: int, minimum: int = 0) -> None:
    """A request's timeout in seconds: within [minimum, the server's max_timeout]."""
    if not minimum <= timeout <= maximum:
        raise E.InvalidArgument(f"timeout must be between {minimum} and {maximum} seconds")


def kernel_session(rt: RuntimeSandbox, template: Template, max_output: int) -> KernelSession | None:
    """The code contexts of a sandbox on `template`; None if it has no kernels."""
    if not template.kernels:
        return None
    return KernelSession(AgentClient(str(rt.socket_path)), "user", max_output)


def log_failure(started: asyncio.Future, sandbox_id: str) -> None:
    """A background start is retried by the first request that needs it; just say what went wrong."""
    def done(f: asyncio.Future) -> None:
        if not f.cancelled() and f.exception() is not None:
            log.warning("code interpreter of sandbox %s did not start: %s", sandbox_id, f.exception())
    started.add_done_callback(done)
