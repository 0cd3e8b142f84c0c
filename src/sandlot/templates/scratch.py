"""The `scratch` template: an empty root filesystem, the bottom of templates whose files all come
from layers (a `docker save` archive imported as one: server/image_archive.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import Progress, Template


@dataclass(frozen=True)
class ScratchRecipe:
    revision: int = 1

    def fingerprint(self) -> str:
        return f"scratch-{self.revision}"

    def build(self, rootfs: Path, cache: Path, progress: Progress) -> dict[str, Any]:
        progress(1, 1, "an empty root filesystem")
        return {}

    def template(self, name: str, rootfs: Path) -> Template:
        return Template(name=name, rootfs=rootfs)
