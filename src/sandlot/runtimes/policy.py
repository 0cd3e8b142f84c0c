"""What a sandbox may do: the one home of isolation defaults.

Runtimes translate a `SandboxSpec` (bwrap argv, cgroup files, seccomp BPF); they never invent policy.
Defaults are closed: no network, no host paths, no capabilities for user processes. Every loosening is
a field someone set on purpose (or a template's host paths), and `loosenings()` names them all so the
service logs them for every sandbox it hands out.
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
    # another process's fds and memory: root inside could take the fds sandlot's own processes
    # hold (pidfd_getfd) or steer their memory management
    "pidfd_getfd", "process_madvise", "process_mrelease",
    # Linux AIO: its context table is host-wide (fs.aio-max-nr, 65,536 events here); one sandbox
    # held all of it and io_setup failed for its neighbours and the host. Programs fall back to
    # threads (glibc's POSIX AIO does not use these).
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    # misc kernel surface
    "lookup_dcookie", "quotactl", "quotactl_fd", "nfsservctl", "vhangup", "iopl", "ioperm",
    "syslog", "personality", "uselib", "ustat", "sysfs", "_sysctl",
)

# Socket families a sandbox may open (socket, socketpair); any other answers EAFNOSUPPORT, like
# Docker's default profile (AF_VSOCK above all: on a VM host a bind inside took a port of the host's).
# Packet and raw sockets would need CAP_NET_RAW, which nothing inside has.
ALLOWED_SOCKET_FAMILIES: dict[str, int] = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
# Netlink protocols within AF_NETLINK: routing (ip addr, getaddrinfo's interface query) and
# sock_diag (ss); audit, uevents, xfrm and the rest are host kernel surface nothing inside needs.
ALLOWED_NETLINK_PROTOCOLS: dict[str, int] = {"NETLINK_ROUTE": 0, "NETLINK_SOCK_DIAG": 4}

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
    # loosening: persistent volumes shared with other sandboxes, (host directory, sandbox path)
    volumes: tuple[tuple[str, str], ...] = ()

    def loosenings(self, template=None) -> list[str]:
        """What this sandbox may do beyond the closed defaults, its template's host paths included.
        These are what the spec allows; a runtime may allow less (its degradations say so)."""
        found = []
        if self.network:
            found.append("network access")
        if self.allow_sudo:
            found.append("sudo: its user may become root inside the sandbox's own user namespace")
        if self.volumes:
            found.append("volumes shared with other sandboxes: " + ", ".join(path for _, path in self.volumes))
        if template is not None and template.ro_binds:
            found.append("read-only host paths: " + ", ".join(inside for _, inside in template.ro_binds))
        return found
