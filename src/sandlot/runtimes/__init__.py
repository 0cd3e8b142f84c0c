"""Isolation runtimes (see interface.Runtime); `make_runtime` picks the one this server can run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interface import Runtime


def make_runtime(home: Path, egress_tls=None) -> Runtime:
    """The namespace runtime as root; without root, the rootless one (which lists what it cannot
    enforce in its degradations). `egress_tls` (egress_proxy.EgressTls): what the `network.rules`
    proxy needs for HTTPS; without it a runtime refuses rules."""
    if os.geteuid() == 0:
        from .namespace import NamespaceRuntime

        return NamespaceRuntime(home, egress_tls)
    from .rootless import RootlessRuntime

    return RootlessRuntime(home)
