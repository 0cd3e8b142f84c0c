"""What a sandbox may do: the one home of isolation defaults.

Runtimes translate a `SandboxSpec` (bwrap argv, cgroup files, seccomp BPF); they never invent policy.
Defaults are closed: no network, no host paths, no capabilities for user processes. Every loosening is
a field someone set on purpose, and `loosenings()` names them so the service can log them loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..limits import Limits  # the value clients send; re-exported for the server side

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

    def loosenings(self) -> list[str]:
        found = []
        if self.network:
            found.append("network access")
        return found
