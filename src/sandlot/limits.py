"""Per-sandbox resource limits: a value the SDK sends and the server enforces.

Shared by `client/` and the server side (`runtimes/policy.py` re-exports it), so it imports nothing
of sandlot but the error tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import InvalidArgument


@dataclass(frozen=True)
class Limits:
    """Per-sandbox resource limits (cgroups where available, rlimits otherwise)."""

    memory_mb: int = 512
    cpu_count: float = 1.0
    pids: int = 512
    disk_mb: int = 2048  # reported to clients; no file may grow past it (no quota on the layer's total)

    def validate(self) -> Limits:
        """This value, or InvalidArgument naming the first field out of range."""
        if not 16 <= self.memory_mb <= 256 * 1024:
            raise InvalidArgument(f"memory_mb must be between 16 and 262144, got {self.memory_mb}")
        if not 0.05 <= self.cpu_count <= 256:
            raise InvalidArgument(f"cpu_count must be between 0.05 and 256, got {self.cpu_count}")
        if not 8 <= self.pids <= 1_000_000:
            raise InvalidArgument(f"pids must be between 8 and 1000000, got {self.pids}")
        if not 16 <= self.disk_mb <= 16 * 1024 * 1024:
            raise InvalidArgument(f"disk_mb must be between 16 and 16777216, got {self.disk_mb}")
        return self
