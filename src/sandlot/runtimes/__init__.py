"""Isolation runtimes (see interface.Runtime); `make_runtime` picks the one this server can run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interface import Runtime


def make_runtime(home: Path, egress_tls=None, team_share: float | None = None) -> Runtime:
    """The namespace runtime as root; without root, the rootless one (which lists what it cannot
    enforce in its degradations). `egress_tls` (egress_proxy.EgressTls): what the `network.rules`
    proxy needs for HTTPS; without it a runtime refuses rules. `team_share`: of the resolver's and
    the proxy's budgets, what one team's sandboxes may hold together (None: budgets.TEAM_SHARE)."""
    if os.geteuid() == 0:
        from .budgets import TEAM_SHARE
        from .namespace import NamespaceRuntime

        return NamespaceRuntime(home, egress_tls, TEAM_SHARE if team_share is None else team_share)
    from .rootless import RootlessRuntime

    return RootlessRuntime(home)
