"""What a sandbox may do: the one home of isolation defaults.

Runtimes translate a `SandboxSpec` (bwrap argv, cgroup files, seccomp BPF); they never invent policy.
Defaults are closed: no network, no host paths, no capabilities for user processes. Every loosening is
a field someone set on purpose (or a template's host paths), and `loosenings()` names them all so the
service logs them for every sandbox it hands out.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from .._exceptions import InvalidArgument
from ..protocol import contract
from .permissions import PRESETS, WRITE, LEVELS, Rule, RuleError, resolve

# Capabilities the in-sandbox agent keeps inside the sandbox's own user namespace (never on the host):
# enough to switch to the sandbox's users, own their files and serve `sudo`. A process running as
# `user` has none of them (setuid to a non-zero uid clears them); root inside keeps this set, like
# Docker's default. CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE are never granted.
SANDBOX_ROOT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_AUDIT_WRITE",
)

# Syscalls a sandbox never needs and attackers love. Denied with EPERM for every process in it.
DENIED_SYSCALLS: tuple[str, ...] = (
    # kernel modules, kexec, reboot, swap, accounting, clock
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # kernel keyrings, BPF, perf, userfaultfd, handle-based opens (container escapes)
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "open_by_handle_at", "name_to_handle_at",
    # tracing and foreign memory access
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    # no new mounts or root changes once the sandbox is built
    "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr",
    # namespaces: no nesting tricks, no joining others
    "setns", "unshare",
    # io_uring: a large, often exploited kernel surface that seccomp cannot inspect (its operations
    # bypass syscall filtering); Docker denies it by default too
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # misc kernel surface
    "lookup_dcookie", "quotactl", "quotactl_fd", "nfsservctl", "vhangup", "iopl", "ioperm",
    "syslog", "personality", "uselib", "ustat", "sysfs", "_sysctl",
)

# The environment bwrap itself runs with: none. bwrap is pid 1 inside, and root there can read
# /proc/1/environ (in the rootless tier, `user` can): the server's (its API key, state dir) must
# never reach it. What sandbox processes see is set with --setenv after --clearenv.
BWRAP_ENV: dict[str, str] = {}

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-sandbox resource limits (cgroups where available, rlimits otherwise)."""

    memory_mb: int = 512
    cpu_count: float = 1.0
    pids: int = 512
    disk_mb: int = 2048  # reported to clients; no file may grow past it (no quota on the layer's total)

    # Alphora's ResourceLimits presets, in sandlot's terms (pids counts sandlot's own ~3 too)
    @classmethod
    def minimal(cls) -> "Limits":
        return cls(memory_mb=128, cpu_count=0.5, pids=32, disk_mb=256)

    @classmethod
    def standard(cls) -> "Limits":
        return cls()

    @classmethod
    def high_performance(cls) -> "Limits":
        return cls(memory_mb=4096, cpu_count=4.0, pids=1024, disk_mb=10240)

    def validate(self) -> "Limits":
        if not 16 <= self.memory_mb <= 256 * 1024:
            raise InvalidArgument(f"memory_mb must be between 16 and 262144, got {self.memory_mb}")
        if not 0.05 <= self.cpu_count <= 256:
            raise InvalidArgument(f"cpu_count must be between 0.05 and 256, got {self.cpu_count}")
        if not 8 <= self.pids <= 1_000_000:
            raise InvalidArgument(f"pids must be between 8 and 1000000, got {self.pids}")
        if not 16 <= self.disk_mb <= 16 * 1024 * 1024:
            raise InvalidArgument(f"disk_mb must be between 16 and 16777216, got {self.disk_mb}")
        return self


# ---- path permissions and Alphora's security knobs (issue 13) ------------------------------------

DEFAULT_WORKSPACE = "/workspace"  # AgentFense's path
# Where a workspace may not go: sandlot's own mounts, and what every program needs.
_RESERVED = ("/", "/proc", "/dev", "/sys", "/tmp", "/run", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
             contract.CODE_ROOT, contract.RUN_DIR)
SHELLS = ("sh", "bash", "dash", "rbash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish")


def _absolute(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise InvalidArgument(f"{what} must be an absolute path, got {path!r}")
    return posixpath.normpath(path).replace("//", "/")


@dataclass(frozen=True)
class Workspace:
    """A codebase in the sandbox at ``mount_path``, through the permission filesystem (permfs/),
    with ``rules`` (runtimes/permissions.py) deciding what every process there may see and do.
    Writes land in the sandbox's own copy-on-write layer, never in the codebase itself."""

    source: Path | None  # the codebase's tree on the host; None: an empty one
    mount_path: str = DEFAULT_WORKSPACE
    rules: tuple[Rule, ...] = PRESETS["view-only"]
    codebase: str | None = None  # the codebase's id, if it is one (server/codebase_store.py)

    def validate(self) -> "Workspace":
        path = _absolute(self.mount_path, "the workspace's path")
        if any(path == r or r != "/" and path.startswith(r + "/") for r in _RESERVED):
            raise InvalidArgument(f"a workspace cannot be mounted at {path} (sandlot or the system needs it)")
        return self


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
    - audit_enabled: denied file operations are recorded in the sandbox's log.
    """

    allow_shell: bool = True
    allow_subprocess: bool = True
    allow_file_write: bool = True
    blocked_paths: tuple[str, ...] = ()
    max_output_size: int | None = None
    blocked_imports: tuple[str, ...] = ()
    audit_enabled: bool = True

    @classmethod
    def strict(cls) -> "SecurityPolicy":
        """Alphora's strict(): no shell, no subprocesses, and (advisory) no os, subprocess,
        shutil, ctypes, multiprocessing or socket imports."""
        return cls(allow_shell=False, allow_subprocess=False,
                   blocked_imports=("os", "subprocess", "shutil", "ctypes", "multiprocessing", "socket"))

    @classmethod
    def permissive(cls) -> "SecurityPolicy":
        """Alphora's permissive(): everything allowed (sandlot's default, too)."""
        return cls()

    def validate(self) -> "SecurityPolicy":
        paths = tuple(_absolute(p, "a blocked path") for p in self.blocked_paths)
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

    def restrictions(self) -> list[str]:
        """What this policy takes away, for the log."""
        found = [what for what, allowed in (("no shell", self.allow_shell), ("no subprocesses", self.allow_subprocess),
                                             ("read-only", self.allow_file_write)) if not allowed]
        if self.blocked_paths:
            found.append("blocked paths: " + ", ".join(self.blocked_paths))
        if self.blocked_imports:
            found.append("blocked imports (advisory): " + ", ".join(self.blocked_imports))
        return found


def workspace_rules(workspace: Workspace, security: SecurityPolicy) -> tuple[Rule, ...]:
    """The rules the permission filesystem applies: the workspace's, then the policy's blocked
    paths inside it (above everything), and capped at read for a read-only sandbox."""
    rules = list(workspace.rules)
    top = workspace.mount_path.rstrip("/")
    for path in security.blocked_paths:
        if path == top or path.startswith(top + "/"):
            rel = path[len(top):] or "/"
            rules.append(Rule(rel.rstrip("/") + "/**" if rel != "/" else "/**", "none", priority=10 ** 9))
    if not security.allow_file_write:
        rules = [Rule(r.pattern, "read", r.type, r.priority) if LEVELS[r.permission] == WRITE else r for r in rules]
    return tuple(rules)


def rules_of(preset: str | None = None, rules=()) -> tuple[Rule, ...]:
    """Rules from API input: a preset (view-only when neither it nor rules are given), then the
    explicit rules."""
    try:
        return resolve(preset if preset is not None or rules else "view-only", rules)
    except RuleError as e:
        raise InvalidArgument(str(e)) from None


def workspace_of(source: Path | None, mount_path: str | None = None, preset: str | None = None,
                 rules=(), codebase: str | None = None) -> Workspace:
    """A Workspace from API input (see rules_of)."""
    return Workspace(source, mount_path or DEFAULT_WORKSPACE, rules_of(preset, rules), codebase).validate()


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a runtime needs to build one sandbox."""

    sandbox_id: str
    template: str
    limits: Limits = field(default_factory=Limits)
    envs: dict[str, str] = field(default_factory=dict)
    network: bool = False  # loosening: outbound network (not available in the namespace tier yet)
    allow_sudo: bool = True  # the sandbox's `user` may become root *inside its own user namespace*
    hostname: str = "sandbox"
    background: bool = False  # a pool sandbox: lowest CPU weight until claimed (not a limit)
    workspace: Workspace | None = None  # a codebase at /workspace with path permissions
    security: SecurityPolicy = field(default_factory=SecurityPolicy)

    def hidden_paths(self) -> tuple[str, ...]:
        """The blocked paths outside the workspace (those inside are rules of the workspace)."""
        top = self.workspace.mount_path.rstrip("/") if self.workspace else None
        return tuple(p for p in self.security.blocked_paths if top is None or not (p == top or p.startswith(top + "/")))

    def loosenings(self, template=None) -> list[str]:
        """What this sandbox may do beyond the closed defaults, its template's host paths included.
        These are what the spec allows; a runtime may allow less (its degradations say so)."""
        found = []
        if self.network:
            found.append("network access")
        if self.allow_sudo:
            found.append("sudo: its user may become root inside the sandbox's own user namespace")
        if template is not None and template.ro_binds:
            found.append("read-only host paths: " + ", ".join(inside for _, inside in template.ro_binds))
        return found
