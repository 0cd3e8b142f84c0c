"""Per-sandbox resource limits and security policy: values the SDK sends and the server enforces.

Shared by `client/` and the server side (`runtimes/policy.py` re-exports them), so it imports
nothing of sandlot but the error tree and the in-sandbox paths (protocol/contract.py).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, fields

from ._exceptions import InvalidArgument
from .protocol import contract


@dataclass(frozen=True)
class Limits:
    """Per-sandbox resource limits (cgroups where available, rlimits otherwise)."""

    memory_mb: int = 512
    cpu_count: float = 1.0
    pids: int = 512
    disk_mb: int = 2048  # the size of its own disk (runtimes/disk.py); per file where there is none

    # Alphora's ResourceLimits presets, in sandlot's terms (pids counts sandlot's own ~3 too)
    @classmethod
    def minimal(cls) -> Limits:
        return cls(memory_mb=128, cpu_count=0.5, pids=32, disk_mb=256)

    @classmethod
    def standard(cls) -> Limits:
        return cls()

    @classmethod
    def high_performance(cls) -> Limits:
        return cls(memory_mb=4096, cpu_count=4.0, pids=1024, disk_mb=10240)

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


def absolute(path: str, what: str) -> str:
    """``path`` normalised, or InvalidArgument if it is not an absolute path."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise InvalidArgument(f"{what} must be an absolute path, got {path!r}")
    return posixpath.normpath(path).replace("//", "/")


@dataclass(frozen=True)
class SecurityPolicy:
    """Alphora's SecurityPolicy knobs, as sandlot enforces them:

    - allow_shell: False masks the shells (sh, bash, ...) with an unexecutable file, so nothing
      in the sandbox can start one (commands, sessions and terminals, which run bash, fail).
    - allow_subprocess: False means no process creation after start: every process sandlot starts
      for the sandbox (commands, code-context kernels) runs under a seccomp filter that denies
      fork, vfork and clone of new processes (threads stay); sudo and sessions are refused, and
      commands run without the login profile (which forks). A command line is one program then.
    - allow_file_write: False makes the sandbox read-only: its root file system, and the
      workspace (rules capped at read); only the private in-memory /tmp stays writable.
    - blocked_paths: paths that do not exist for the sandbox: inside the workspace, `none` rules
      above every other; elsewhere, hidden in its root's own layer (ENOENT, root included).
    - max_output_size: bytes of output one command or code run may return (the rest is dropped
      with a marker); None: the server's limit.
    - blocked_imports: ADVISORY ONLY. A Python import hook (sitecustomize) refuses these
      modules (``mod``) and attributes (``mod.attr``) to code run as a program or in a code context;
      any program can get around it (another interpreter, importlib tricks). Not a security boundary.
    - audit_enabled: denied file operations in the workspace are recorded in the audit trail
      (`file.denied`: op, path, process) and the sandbox's log; False: they are not.
    """

    allow_shell: bool = True
    allow_subprocess: bool = True
    allow_file_write: bool = True
    blocked_paths: tuple[str, ...] = ()
    max_output_size: int | None = None
    blocked_imports: tuple[str, ...] = ()
    audit_enabled: bool = True

    @classmethod
    def strict(cls) -> SecurityPolicy:
        """Alphora's strict(): no shell, no subprocesses, and (advisory) no os, subprocess,
        shutil, ctypes, multiprocessing or socket imports."""
        return cls(allow_shell=False, allow_subprocess=False,
                   blocked_imports=("os", "subprocess", "shutil", "ctypes", "multiprocessing", "socket"))

    @classmethod
    def permissive(cls) -> SecurityPolicy:
        """Alphora's permissive(): everything allowed (sandlot's default, too)."""
        return cls()

    def validate(self) -> SecurityPolicy:
        paths = tuple(absolute(p, "a blocked path") for p in self.blocked_paths)
        for path in paths:
            if path == "/" or any(path == r or path.startswith(r + "/") or r.startswith(path + "/")
                                  for r in ("/proc", "/dev", "/sys", "/tmp", "/run", contract.CODE_ROOT,
                                            contract.RUN_DIR)):
                raise InvalidArgument(f"{path} cannot be blocked: sandlot itself uses it")
        if self.max_output_size is not None and not 1024 <= self.max_output_size <= 1 << 34:
            raise InvalidArgument("max_output_size must be between 1024 bytes and 16 GiB")
        for name in self.blocked_imports:
            if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
                raise InvalidArgument(f"not a module or attribute name: {name!r}")
        return self

    def changes(self) -> dict:
        """The fields that differ from the defaults, as JSON (the sandbox's record keeps them)."""
        return {f.name: list(v) if isinstance(v, tuple) else v for f in fields(self)
                if (v := getattr(self, f.name)) != f.default}

    @classmethod
    def from_changes(cls, changes: dict) -> SecurityPolicy:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})

    def restrictions(self) -> list[str]:
        """What this policy takes away, for the log."""
        found = [what for what, allowed in (("no shell", self.allow_shell), ("no subprocesses", self.allow_subprocess),
                                             ("read-only", self.allow_file_write)) if not allowed]
        if self.blocked_paths:
            found.append("blocked paths: " + ", ".join(self.blocked_paths))
        if self.blocked_imports:
            found.append("blocked imports (advisory): " + ", ".join(self.blocked_imports))
        return found
