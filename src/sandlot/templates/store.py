"""Built templates on disk: <home>/templates/<name>/{rootfs/, manifest.json}.

A build fills a fresh `.new-<name>-<token>` directory and is renamed into place, so readers only
ever see complete templates. The version it replaces is renamed to `.old-<name>-<token>` and
deleted once no sandbox still has it mounted as its lower layer.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._exceptions import NotFound, SandlotError, TemplateError
from ..hostfs import remove_tree, source_in_use, unmount_inside
from .recipes import RECIPES
from .spec import Progress, Recipe, Template, no_progress


class TemplateStore:
    def __init__(self, home: Path, recipes: Mapping[str, Recipe] = RECIPES):
        self.root = Path(home) / "templates"
        # downloads kept between builds (debootstrap's .debs, wheels); resolved, so that a link to a
        # directory not made yet gets its target made instead of failing with "File exists"
        self.cache = Path(os.path.realpath(Path(home) / "cache"))
        self.recipes = recipes

    def list(self) -> list[str]:
        return sorted(self.recipes)

    def manifest(self, name: str) -> dict[str, Any] | None:
        """What the last build of `name` recorded, or None if it was never built."""
        self._recipe(name)
        try:
            return json.loads((self.root / name / "manifest.json").read_text())
        except (OSError, ValueError):
            return None

    def is_built(self, name: str) -> bool:
        """Built, and from the recipe as it is now."""
        manifest = self.manifest(name)
        return bool(manifest and manifest.get("recipe") == self._fingerprint(name)
                    and (self.root / name / "rootfs").is_dir())

    def _fingerprint(self, name: str) -> str:
        """The recipe's own fingerprint, and its parent's: a rebuilt parent rebuilds the child."""
        recipe = self._recipe(name)
        parent = getattr(recipe, "parent", None)
        return recipe.fingerprint() + (f"+{self._fingerprint(parent)}" if parent else "")

    def get(self, name: str, progress: Progress = no_progress) -> Template:
        """The template, built first if it is missing or its recipe changed."""
        if self.is_built(name):
            return self._recipe(name).template(name, self.root / name / "rootfs")
        return self.build(name, progress=progress)

    def describe(self, name: str) -> Template:
        """What the runtime would get for `name`, without building anything (for sandboxes that
        already run from it)."""
        return self._recipe(name).template(name, self.root / name / "rootfs")

    def build(self, name: str, progress: Progress = no_progress, force: bool = False) -> Template:
        """Build `name` unless it is up to date (always, with force). Concurrent callers wait for
        one another, so a template is built once even when several ask for it at once."""
        recipe = self._recipe(name)
        parent = getattr(recipe, "parent", None)
        if parent and not self.is_built(parent):
            self.build(parent, progress=progress)
        with self._lock():
            if force or not self.is_built(name):
                if any(self.root.glob(".new-*")):  # an interrupted build's: this one starts over, clean
                    progress(0, 0, "removing what an interrupted build left")
                    self._sweep()
                self._build(name, recipe, progress)
            self._sweep()
        return recipe.template(name, self.root / name / "rootfs")

    def release_interrupted(self) -> bool:
        """Unmount whatever interrupted builds left mounted, unless a build is running (it holds the
        lock). Their directories are deleted by the next build: deleting a root filesystem takes
        seconds to a minute, too long for a stopping server. False if a build is running."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            for path in self.root.glob(".new-*"):
                unmount_inside(path)
            return True

    def _recipe(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            raise NotFound(f"unknown template '{name}' (known: {', '.join(self.list())})") from None

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _build(self, name: str, recipe: Recipe, progress: Progress) -> None:
        token = secrets.token_hex(4)
        new = self.root / f".new-{name}-{token}"
        (new / "rootfs").mkdir(parents=True)
        for d in (new, new / "rootfs"):
            d.chmod(0o755)
        started = time.monotonic()
        try:
            parent = getattr(recipe, "parent", None)
            if parent:  # under our lock: the parent cannot be swapped while it is copied
                facts = recipe.build(new / "rootfs", self.cache, progress, parent=self.root / parent / "rootfs")
            else:
                facts = recipe.build(new / "rootfs", self.cache, progress)
            manifest = {
                "name": name,
                "recipe": self._fingerprint(name),
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "build_seconds": round(time.monotonic() - started, 1),
                **facts,
            }
            (new / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            current = self.root / name
            if current.exists():
                current.rename(self.root / f".old-{name}-{token}")
            new.rename(current)
        except BaseException as e:  # failed or interrupted: leave nothing half-built behind
            try:
                remove_tree(new, detach_mounts=True)
            except OSError:
                pass  # the next build's sweep tries again; the build's own error is what matters
            if isinstance(e, Exception) and not isinstance(e, SandlotError):
                raise TemplateError(f"building template '{name}' failed: {e}") from e
            raise

    def _sweep(self) -> None:
        """Delete replaced versions no sandbox uses any more, and leftovers of interrupted builds
        (none can be running: the caller holds the build lock)."""
        for path in self.root.iterdir():
            if path.name.startswith((".old-", ".new-")) and not source_in_use(path):
                try:
                    remove_tree(path, detach_mounts=True)
                except OSError:
                    pass  # still mounted: the next build tries again
