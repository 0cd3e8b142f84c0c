"""A storage backend in a local directory (objects are files under it; keys are relative paths)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from .._exceptions import InvalidArgument, NotFound


class LocalBackend:
    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise InvalidArgument(f"bad storage key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, source: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)  # readers never see half an object

    def get(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            raise NotFound(f"{key} is not in {self.location}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root
        if not base.is_dir():
            return []
        found = (str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and not p.name.endswith(".partial"))
        return sorted(k for k in found if k.startswith(prefix))
