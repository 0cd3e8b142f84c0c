"""What a sandbox may do: the one home of isolation defaults.

Runtimes translate a `SandboxSpec` (bwrap argv, cgroup files, seccomp BPF); they never invent policy.
Defaults are closed: no network, no host paths, no capabilities for user processes. Every loosening is
a field someone set on purpose (or a template's host paths), and `loosenings()` names them all so the
service logs them for every sandbox it hands out.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .._exceptions import InvalidArgument
from ..limits import Limits, SecurityPolicy, absolute  # values clients send; re-exported for the server side
from ..permissions import LEVELS, PRESETS, WRITE, Rule, RuleError, resolve
from ..protocol import contract

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


# ---- path permissions and Alphora's security knobs (issue 13) ------------------------------------

DEFAULT_WORKSPACE = "/workspace"  # AgentFense's path
# Where a workspace may not go: sandlot's own mounts, and what every program needs.
_RESERVED = ("/", "/proc", "/dev", "/sys", "/tmp", "/run", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
             contract.CODE_ROOT, contract.RUN_DIR)
SHELLS = ("sh", "bash", "dash", "rbash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish")


@dataclass(frozen=True)
class Workspace:
    """A codebase in the sandbox at ``mount_path``, through the permission filesystem (permfs/),
    with ``rules`` (sandlot/permissions.py) deciding what every process there may see and do.
    Writes land in the sandbox's own copy-on-write layer, never in the codebase itself."""

    source: Path | None  # the codebase's tree on the host; None: an empty one
    mount_path: str = DEFAULT_WORKSPACE
    rules: tuple[Rule, ...] = PRESETS["view-only"]
    codebase: str | None = None  # the codebase's id, if it is one (server/codebase_store.py)

    def validate(self) -> "Workspace":
        path = absolute(self.mount_path, "the workspace's path")
        if any(path == r or r != "/" and path.startswith(r + "/") for r in _RESERVED):
            raise InvalidArgument(f"a workspace cannot be mounted at {path} (sandlot or the system needs it)")
        return self


def workspace_rules(workspace: Workspace, security: SecurityPolicy) -> tuple[Rule, ...]:
    """The rules the permission filesystem applies: the workspace's, then the policy's blocked
    paths inside it (above everything), and capped at read for a read-only sandbox."""
    rules = list(workspace.rules)
    top = workspace.mount_path.rstrip("/")
    for path in security.blocked_paths:
        if path == top or path.startswith(top + "/"):
            rel = _literal(path[len(top):] or "/")  # a path, not a pattern: data[1] is that name only
            rules.append(Rule(rel.rstrip("/") + "/**" if rel != "/" else "/**", "none", priority=10 ** 9))
    if not security.allow_file_write:
        rules = [Rule(r.pattern, "read", r.type, r.priority) if LEVELS[r.permission] == WRITE else r for r in rules]
    return tuple(rules)


def _literal(path: str) -> str:
    """``path`` as a glob that matches only itself (each wildcard character in a class of its own)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


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
    network: NetworkPolicy | None = None  # loosening: outbound network (None: only loopback)
    # whose share of the host's egress budgets its network counts against (runtimes/budgets.py);
    # None: a pool sandbox's, whose team comes with its network when it is claimed
    team: str | None = None
    # a pool sandbox: make its link now, unconfigured and down, so a claim with a network is quick
    network_ready: bool = False
    allow_sudo: bool = True  # the sandbox's `user` may become root *inside its own user namespace*
    hostname: str = "sandbox"
    background: bool = False  # a pool sandbox: lowest CPU weight until claimed (not a limit)
    workspace: Workspace | None = None  # a codebase at /workspace with path permissions
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    # loosening: persistent volumes shared with other sandboxes, (host directory, sandbox path)
    volumes: tuple[tuple[str, str], ...] = ()

    def hidden_paths(self) -> tuple[str, ...]:
        """The blocked paths outside the workspace (those inside are rules of the workspace)."""
        top = self.workspace.mount_path.rstrip("/") if self.workspace else None
        return tuple(p for p in self.security.blocked_paths if top is None or not (p == top or p.startswith(top + "/")))

    def loosenings(self, template=None) -> list[str]:
        """What this sandbox may do beyond the closed defaults, its template's host paths included.
        These are what the spec allows; a runtime may allow less (its degradations say so)."""
        found = []
        if self.network is not None:
            found.append(f"network access ({self.network.describe()})")
        if self.allow_sudo:
            found.append("sudo: its user may become root inside the sandbox's own user namespace")
        if self.volumes:
            found.append("volumes shared with other sandboxes: " + ", ".join(path for _, path in self.volumes))
        if template is not None and template.ro_binds:
            found.append("read-only host paths: " + ", ".join(inside for _, inside in template.ro_binds))
        return found


# ---- network (egress) ------------------------------------------------------------------------
# A sandbox with a network gets one veth to the host (runtimes/network.py translates this data into
# nftables). Whatever a policy says, these stay closed unless an allow entry names an address inside
# them explicitly (a CIDR contained in the range, never a broader one such as 0.0.0.0/0), and the
# sandboxes' own subnet never opens: other sandboxes are never reachable.
ALWAYS_BLOCKED: tuple[str, ...] = (
    "0.0.0.0/8",  # "this network"
    "127.0.0.0/8",  # the host's loopback (martian on a veth, dropped on principle too)
    "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
    "100.100.100.200/32",  # metadata of some clouds (Alibaba)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
)
# The host's own addresses (the control plane among them) are closed by an address-type match in
# the rules, so they need no list. Sandbox link addresses: a /30 per uid slot (host-wide unique).
SANDBOX_SUBNET = ipaddress.IPv4Network("10.200.0.0/18")
MAX_RULES = 256  # allow/deny entries per sandbox
MAX_DNS_SERVERS = 10
_NAME = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def _entry(value: str, what: str) -> str | ipaddress.IPv4Network:
    """An allow/deny entry: an IPv4 address or CIDR (as a network), or a host name (lower case,
    optionally `*.` for every name below it)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{what}: entries must be non-empty strings")
    value = value.strip().lower().rstrip(".")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        if len(value) > 253 or not _NAME.match(value):
            raise InvalidArgument(f"{what}: {value!r} is neither an IPv4 address, a CIDR nor a host name") from None
        return value
    if net.version != 4:
        raise InvalidArgument(f"{what}: {value!r} is IPv6; sandboxes have IPv4 only")
    return net


@dataclass(frozen=True)
class NetworkPolicy:
    """Outbound network of one sandbox, in E2B's terms (docs/e2b.md §2.13, `network`).

    A destination passes if an allow entry matches it (IP/CIDR, or an address that an allowed name
    resolved to through the sandbox's resolver), else not if a deny entry matches, else if
    `internet`. `deny=("0.0.0.0/0",)` with names in `allow` is the allow-list pattern. ALWAYS_BLOCKED
    and the host's addresses are closed before any of this.
    """

    internet: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] | None = None  # upstreams of the sandbox's resolver; None: the host's
    bandwidth_mbps: float | None = None  # cap, each direction (sandlot's own)
    # E2B's network.rules: headers the egress proxy sets per host (egress_rules.py; secrets)
    rules: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    # E2B's network.egressProxy: (host, port, username, password, tls) of a user's SOCKS5 proxy that
    # all of the sandbox's TCP goes through (socks.py), or None
    socks: tuple | None = None

    @classmethod
    def from_e2b(cls, allow_internet_access: bool | None, allow_out: list[str] | None = None,
                 deny_out: list[str] | None = None, dns_servers: list[str] | None = None,
                 bandwidth_mbps: float | None = None, rules=(), socks=None) -> "NetworkPolicy | None":
        """E2B's create/update fields as a policy, or None for no network at all (only loopback).

        sandlot's default is closed: a request that says nothing about egress gets no network,
        where E2B would give internet. `allow_internet_access` true, or egress rules (allow_out,
        deny_out), ask for one; false with no allow_out is no network; false with allow_out is
        the allow-list (E2B: false "works the same as deny_out 0.0.0.0/0").
        """
        allow, deny = tuple(allow_out or ()), tuple(deny_out or ())
        if allow_internet_access is None:
            if not (allow or deny):
                allow_internet_access = False
            else:
                allow_internet_access = True
        if not allow_internet_access and not allow:
            if rules or socks:  # E2B: rules grant no access; here no access is no network at all
                raise InvalidArgument(f"network.{'rules' if rules else 'egressProxy'} needs a network to apply "
                                      "to: name the hosts in allowOut (or set allow_internet_access)")
            return None
        dns = None if dns_servers is None else tuple(dns_servers)
        return cls(internet=allow_internet_access, allow=allow, deny=deny, dns_servers=dns,
                   bandwidth_mbps=bandwidth_mbps, rules=tuple(rules), socks=socks).validate()

    def validate(self) -> "NetworkPolicy":
        for what, entries in (("allow_out", self.allow), ("deny_out", self.deny)):
            if len(entries) > MAX_RULES:
                raise InvalidArgument(f"{what}: at most {MAX_RULES} entries")
            for e in entries:
                _entry(e, what)
        if self.dns_servers is not None:
            if len(self.dns_servers) > MAX_DNS_SERVERS:
                raise InvalidArgument(f"dns_servers: at most {MAX_DNS_SERVERS} entries")
            for server in self.dns_servers:
                try:
                    address = ipaddress.IPv4Address(server)
                except ValueError:
                    raise InvalidArgument(f"dns_servers: {server!r} is not an IPv4 address") from None
                # the resolver asks them from the host: never a closed range on a sandbox's behalf
                if address in SANDBOX_SUBNET or any(address in ipaddress.IPv4Network(b) for b in ALWAYS_BLOCKED):
                    raise InvalidArgument(f"dns_servers: {server} is in a range sandboxes never reach")
        if self.bandwidth_mbps is not None and not 0.1 <= self.bandwidth_mbps <= 100_000:
            raise InvalidArgument("bandwidth_mbps must be between 0.1 and 100000")
        return self

    def networks(self, which: str) -> list[ipaddress.IPv4Network]:
        return [e for e in map(lambda v: _entry(v, which), getattr(self, which)) if not isinstance(e, str)]

    def names(self, which: str) -> list[str]:
        return [e for e in map(lambda v: _entry(v, which), getattr(self, which)) if isinstance(e, str)]

    def open_to_all(self) -> bool:
        """Whether every address outside the closed ranges passes (what getInfo calls
        allowInternetAccess)."""
        everything = ipaddress.IPv4Network("0.0.0.0/0")
        return (self.internet and everything not in self.networks("deny")) or everything in self.networks("allow")

    def describe(self) -> str:
        parts = ["internet" if self.internet else "no internet"]
        if self.allow:
            parts.append(f"allow {len(self.allow)}")
        if self.deny:
            parts.append(f"deny {len(self.deny)}")
        if self.rules:
            parts.append(f"header rules for {len(self.rules)} hosts")
        if self.socks:
            tls = " over TLS" if len(self.socks) > 4 and self.socks[4] else ""
            parts.append(f"through the SOCKS5 proxy {self.socks[0]}:{self.socks[1]}{tls}")
        return ", ".join(parts)

    def as_json(self) -> dict:
        return {"internet": self.internet, "allow": list(self.allow), "deny": list(self.deny),
                "dns_servers": None if self.dns_servers is None else list(self.dns_servers),
                "bandwidth_mbps": self.bandwidth_mbps,
                "rules": [[host, [list(h) for h in headers]] for host, headers in self.rules],
                "socks": None if self.socks is None else [list(v) if isinstance(v, tuple) else v for v in self.socks]}

    @classmethod
    def from_json(cls, data: dict) -> "NetworkPolicy":
        dns = data.get("dns_servers")
        rules = tuple((host, tuple((n, v) for n, v in headers)) for host, headers in data.get("rules", ()))
        return cls(internet=bool(data.get("internet", True)), allow=tuple(data.get("allow", ())),
                   deny=tuple(data.get("deny", ())), dns_servers=None if dns is None else tuple(dns),
                   bandwidth_mbps=data.get("bandwidth_mbps"), rules=rules,
                   socks=_socks(data.get("socks")))


def _socks(stored: list | None) -> tuple | None:
    """A stored egressProxy as socks.py's tuple; one stored before TLS (four fields) has none."""
    if stored is None:
        return None
    host, port, user, password, tls = (*stored, None)[:5]
    return host, port, user, password, None if tls is None else tuple(tls)


def closed(ip: str) -> bool:
    """Whether `ip` is closed to sandboxes whatever a policy says (short of an explicit allow):
    ALWAYS_BLOCKED, the sandboxes' subnet, or one of this host's own addresses (only those can be
    bound)."""
    address = ipaddress.IPv4Address(ip)
    if address in SANDBOX_SUBNET or any(address in ipaddress.IPv4Network(b) for b in ALWAYS_BLOCKED):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
        return True


def name_matches(name: str, patterns: list[str]) -> bool:
    """Whether a queried host name matches an entry: the name itself, or `*.zone` for any name
    below zone (not zone itself)."""
    name = name.lower().rstrip(".")
    for p in patterns:
        if p.startswith("*."):
            if name.endswith(p[1:]):
                return True
        elif name == p:
            return True
    return False
