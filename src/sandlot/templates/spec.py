"""What a template is to the runtime (Template) and what a recipe must provide to build one (Recipe)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# progress(done, total, message): called as a build advances; total is an estimate and may change.
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:
    pass


@dataclass(frozen=True)
class Template:
    """A built template, as the runtime consumes it."""

    name: str
    rootfs: Path  # directory to use as the read-only lower layer (owned by host uid 0)
    ro_binds: tuple[tuple[str, str], ...] = ()  # (host path, sandbox path) extra read-only binds
    masked: tuple[str, ...] = ()  # sandbox directories to hide under an empty read-only tmpfs
    python: str = "/usr/bin/python3"  # interpreter inside the sandbox, runs the in-sandbox agent
    kernels: bool = False  # its python3 has jupyter_client and ipykernel: code contexts work
    # read-only layers stacked on rootfs, bottom first (a snapshot's; layers/store.py holds them)
    layers: tuple[Path, ...] = ()
    envs: tuple[tuple[str, str], ...] = ()  # env vars every sandbox from it gets (under its own)


class Recipe(Protocol):
    """How to make one template. Recipes are data in the registry (recipes.RECIPES).

    A recipe with a `parent` attribute (a template name) is built from that template: the store
    builds the parent first and passes its rootfs to build() as `parent=`.
    """

    def fingerprint(self) -> str:
        """A hash of everything that shapes the result: a change triggers a rebuild."""

    def build(self, rootfs: Path, cache: Path, progress: Progress) -> dict[str, Any]:
        """Fill the empty directory `rootfs`; return facts for the manifest (packages, mirror...).

        `cache` is a directory the recipe may keep downloads in between builds.
        """

    def template(self, name: str, rootfs: Path) -> Template:
        """The runtime's view of a rootfs this recipe built."""
