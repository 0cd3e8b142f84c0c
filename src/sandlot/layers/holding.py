"""A runtime whose sandboxes hold the layers they are stacked on, for as long as they exist.

Wraps any Runtime: create() takes holder "sandbox:<id>" on the template's layers before the
sandbox mounts them; kill() releases it and collects the layers nobody holds any more. Every
path that makes or removes a sandbox (requests, pools, the reaper, adoption's clean-up) goes
through these two, so none can forget a reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .store import LayerStore

log = logging.getLogger("sandlot.layers")


def digest_of(layer: Path) -> str:
    """The digest of a layer tree LayerStore.path() gave."""
    return "sha256:" + layer.parent.name


def holder(sandbox_id: str) -> str:
    return f"sandbox:{sandbox_id}"


class HoldingRuntime:
    def __init__(self, runtime, layers: LayerStore):
        self.inner = runtime
        self.layers = layers

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def create(self, spec, template):
        if template.layers:
            self.layers.hold(holder(spec.sandbox_id), [digest_of(p) for p in template.layers])
        try:
            return self.inner.create(spec, template)
        except BaseException:
            self._release(spec.sandbox_id)
            raise

    def kill(self, sandbox_id: str) -> None:
        try:
            self.inner.kill(sandbox_id)
        finally:
            self._release(sandbox_id)

    def _release(self, sandbox_id: str) -> None:
        if self.layers.held_by(holder(sandbox_id)):
            self.layers.release(holder(sandbox_id))
            self.layers.gc()

    def forget_gone(self, known: set[str]) -> None:
        """At start: sandboxes the runtime has no trace of and the service does not know hold nothing."""
        present = self.inner.leftovers() | known
        stale = [h for h in self.layers.holders("sandbox:") if h.split(":", 1)[1] not in present]
        stale += [*self.layers.holders("fork:"), *self.layers.holders("import:")]  # a crash mid-way
        for h in stale:
            self.layers.release(h)
        if stale:
            log.info("released the layers of %d sandbox(es) gone while the server was down", len(stale))
        self.layers.gc()
