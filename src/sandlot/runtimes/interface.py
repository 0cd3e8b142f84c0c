"""The runtime interface every isolation tier implements (namespace today; gVisor, Docker, k8s later)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .cgroups import Usage
from .policy import NetworkPolicy, SandboxSpec

if TYPE_CHECKING:
    from ..templates import Template
    from .workspace import Workspaces


@dataclass
class RuntimeSandbox:
    """A running sandbox as its runtime sees it."""

    sandbox_id: str
    socket_path: Path  # the agent's unix socket, reachable from the host
    pid: int  # host pid of the sandbox's outermost process
    started_ticks: int  # that process's start time (/proc/PID/stat field 22): guards against pid reuse


class Runtime(Protocol):
    name: str
    # codebases with path permissions (runtimes/workspace.py); None where the tier has none
    workspaces: Workspaces | None
    network_missing: str | None  # why this runtime gives sandboxes no network here; None: it does

    def create(self, spec: SandboxSpec, template: Template) -> RuntimeSandbox:
        """Build and start a sandbox; return once its agent accepts connections. The template's
        `layers` (a snapshot's) are stacked on its rootfs."""

    def adopt(self, sandbox_id: str) -> RuntimeSandbox | None:
        """Find a sandbox a previous server left running; None if it is gone or broken."""

    def alive(self, rt: RuntimeSandbox) -> bool:
        """Whether the sandbox's processes still run."""

    def kill(self, sandbox_id: str) -> None:
        """Stop every process and remove every resource of the sandbox. Idempotent."""

    def usage(self, sandbox_id: str, previous: Usage | None = None) -> Usage:
        """Its cgroup's readings now. `previous` (a reading of this sandbox's) may come back as it
        is if the sandbox has used no CPU since: an idle sandbox's memory and pids cannot grow."""

    def disk_used(self, sandbox_id: str) -> int:
        """Bytes the sandbox's writable layer occupies."""

    def freeze(self, sandbox_id: str, frozen: bool) -> None: ...

    # Optional: port_socket(rt, family) -> a socket inside the sandbox's network namespace, how the
    # port proxy (server/proxy.py) reaches in; a runtime without it has no ports in (501).
    # Optional: disk_written(sandbox_id) -> bytes its disk image holds on the host's disk (host
    # admission, server/quotas.py); a runtime without it counts 0.

    def set_network(self, sandbox_id: str, policy: NetworkPolicy | None, adopting: bool = False,
                    team: str | None = None) -> None:
        """Give a running sandbox a network under `policy`, replace its policy, or (None) take its
        network away; Unsupported where the tier cannot. `adopting`: a restart takes it over;
        `team`: the sandbox's, whose share of the host's egress budgets it counts against."""

    def writable_layer(self, sandbox_id: str) -> tuple[Path, int]:
        """The sandbox's writable layer (a directory to commit as a layer: snapshots, fork,
        filesystem pause) and the host uid that is root in it. Unsupported where there is none."""

    def foreground(self, sandbox_id: str) -> None:
        """A pool sandbox (spec.background) was claimed: give it the normal CPU weight."""

    def leftovers(self) -> set[str]:
        """Ids of sandboxes that still hold resources on this host (dirs, cgroups, mounts)."""

    def close(self) -> None:
        """Release what the runtime itself holds once the server stops (not running sandboxes)."""

    def degradations(self) -> list[str]:
        """What this runtime cannot enforce on this host (shown as a warning at start)."""
