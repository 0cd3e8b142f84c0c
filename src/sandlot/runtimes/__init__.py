"""Isolation runtimes (see interface.Runtime); `make_runtime` picks the one this server can run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interface import Runtime


def make_runtime(home: Path) -> Runtime:
    """The namespace runtime as root; without root, the rootless one (which lists what it cannot
    enforce in its degradations)."""
    if os.geteuid() == 0:
        from .namespace import NamespaceRuntime

        return NamespaceRuntime(home)
    from .rootless import RootlessRuntime

    return RootlessRuntime(home)
