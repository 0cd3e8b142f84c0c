"""The namespace runtime: one sandbox = bubblewrap + a private user namespace + overlay + cgroups.

How a sandbox is built (as root on the host):

1. Fork. The child joins the sandbox's cgroups, makes its own mount namespace from a base without
   the other sandboxes' mounts (mount_ns.py) and its own network namespace while still host root
   (only loopback; owned by the host, see runtimes/network.py), becomes the sandbox's unique
   host uid range base (never root) and unshares a user namespace; the parent maps inside
   0..65535 onto that range.
2. The parent id-maps the template's root filesystem through that user namespace (so the template,
   owned by host root, appears owned by the sandbox's own root and `user`) and mounts an overlay with a
   per-sandbox upper layer on top. Sandbox writes land in the upper layer only. It makes these
   mounts in the host's namespace, then attaches a copy of them in the child's.
3. The child execs bwrap, which (root inside its user namespace only) makes the mount, pid, ipc, uts
   and cgroup namespaces (the network namespace the child made itself, as host root: netns.new_netns),
   binds the overlay as /, adds /proc, /dev, the agent code and its socket directory, drops to the
   agent's capability set, loads the seccomp filter and sets no_new_privs, then starts the agent.

What a sandbox owns on the host: <home>/sandboxes/<id>/ (state, the template's lower mounts, and
its disk: an ext4 image of disk_mb mounted at disk/, holding the overlay's upper layer and the agent's
log: disk.py), and /run/sandlot/<home hash>/<id>/ (a small tmpfs with its root mount and agent socket
directory: bwrap runs as the sandbox's uid and must be able to reach them, which a private state dir
would not allow; the directory admits the sandbox's gid only, and its mounts are nosuid and nodev).
kill() removes processes (cgroup), its network (link, rules), mounts, cgroups and both directories,
in that order. Over 400 lines: create's host steps (disk, run tmpfs, devpts, network namespace,
uid maps, lowers, overlay) and kill's undoing of them, whose order is what keeps the host safe,
are read best in one place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path

from .. import _exceptions as E
from ..hostfs import allocated, mounted_under, tree_usage
from ..layers.mount import mount_lowers, mount_overlay, unmount_lowers
from ..permfs.client import missing as permfs_missing
from ..volumes.mount import mount_volumes, unmount_volumes
from ..protocol import contract
from .. import syscalls
from . import cgroups, disk, hidden, links, netns, seccomp
from .agent_setup import agent_answers, install_agent, policy_settings, wait_for_ready, write_config
from .bwrap import bind, install_bwrap, policy_ops, render, sandbox_setup, volume_binds
from .cgroups import SandboxCgroup
from .interface import RuntimeSandbox
from .mount_ns import MountNamespaces, own_namespace
from .budgets import TEAM_SHARE
from .network import start_network, write_resolv_conf
from .policy import SANDBOX_ROOT_CAPS, Limits, MiB, NetworkPolicy, SandboxSpec
from .sandbox_process import alive, become_sandbox, start_ticks
from .sources import Sources
from .stems import Stems, discard, hand_over
from .uids import UID_RANGE, UidRanges, uid_base
from .workspace import Workspaces
from .zygote import Zygote

log = logging.getLogger("sandlot.runtime")

RUN_MOUNT_FLAGS = syscalls.MS_NODEV | syscalls.MS_NOSUID | syscalls.MS_NOEXEC
RUN_TMPFS = "size=1m,nr_inodes=256"  # agent.json, its socket, boot_id, the mount points
RUN_ROOT = Path("/run/sandlot")
WORKSPACE_POINT = "ws"  # in a sandbox's run dir: its workspace, in its own mount namespace only
HOME_RECORD = ".home"  # in a server's mount root: its state dir (sandlot_dirs)
CODE_MOUNT = "code"  # in the server's run directory: the in-sandbox tree and bwrap, one copy per version
CODE_TMPFS = "size=64m,mode=0711"
# Terminals per sandbox. The kernel's are host-wide (kernel.pty.max 4096, of which new devpts
# instances share max - reserve = 3072): one sandbox once took them all, and a neighbour's
# pty.create() failed. 64 each takes 48 sandboxes at their bound to run the host out.
PTYS_PER_SANDBOX = 64
TTY_GID = 5  # the tty group of Debian's /etc/group: a terminal's group inside


def mount_root(home: Path) -> Path:
    """Where the sandboxes of the server with this state dir have their mounts."""
    return RUN_ROOT / hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]


def sandlot_dirs() -> list[Path]:
    """Where the namespace runtimes of this host make mounts: /run/sandlot, and the state dir of
    each (recorded in its mount root: a server that is not running may still have sandboxes)."""
    homes = set()
    for record in RUN_ROOT.glob(f"*/{HOME_RECORD}"):
        try:
            homes.add(Path(record.read_text()))
        except OSError:  # its server removed it meanwhile
            pass
    return [RUN_ROOT, *(h for h in homes if h.is_absolute() and h != Path("/"))]


class NamespaceRuntime:
    name = "namespace"

    def __init__(self, home: Path, egress_tls=None, team_share: float = TEAM_SHARE):
        self.home = home
        self.root = home / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.mnt = mount_root(home)
        self.cgroup_group = "sandlot-" + self.mnt.name
        self.mnt.mkdir(parents=True, exist_ok=True)
        for p in (self.mnt.parent, self.mnt):
            os.chmod(p, 0o711)
        # the agent's code and bwrap's copy on a filesystem of their own: what a sandbox sees of them
        # (its mountinfo, /proc/1/exe) names no host path
        self.code = self.mnt / CODE_MOUNT
        if not os.path.ismount(self.code):
            self.code.mkdir(mode=0o711, exist_ok=True)
            syscalls.mount("tmpfs", str(self.code), "tmpfs", syscalls.MS_NODEV | syscalls.MS_NOSUID, CODE_TMPFS)
        self.agent_dir = install_agent(self.code)
        self.bwrap = install_bwrap(self.code)
        (self.mnt / HOME_RECORD).write_text(str(home.resolve()))
        self.sources = Sources(self.mnt)  # templates on mounts of their own, to clone
        # sandboxes' mount namespaces are made from one without the sandboxes' mounts (mount_ns.py)
        self.mount_ns = MountNamespaces(clear=sandlot_dirs(), keep=[self.code])
        self.cgroup_version = cgroups.detect()
        # with cgroups, sandbox processes are forked (and attached) ahead of time, by a small process
        self.zygote = Zygote(self.mount_ns.base) if self.cgroup_version else None
        self.stems = Stems(self.cgroup_version, self.cgroup_group, self._reap_in_background, zygote=self.zygote,
                           base_ns=self.mount_ns.base) if self.cgroup_version else None
        self.uids = UidRanges(self.mnt)
        self._slots: dict[str, int] = {}  # sandbox -> its uid slot, from create/adopt to kill (network_usage)
        self.workspaces = Workspaces(home, self.root, self.mnt)  # codebases with path permissions (issue 13)
        # each sandbox on a disk of its own where loop devices allow (disk.py)
        self.disks = disk.available() is None
        if self.disks:  # mkfs once per home for the default size (~0.2 s), not at a create
            disk.blank(home / "disks", Limits.disk_mb)
        # claims of sandboxes that never got a state dir (a crash mid-create) are stale; the
        # others stay until the service adopts or kills their sandbox
        self.network, self.network_missing = start_network(self.mnt.name, home, egress_tls, team_share)
        known = self.leftovers()
        for sid in set(self.uids.mine().values()) - known:
            self.uids.release(sid)
        if self.network:
            self.network.sweep(set(self.uids.mine()))

    # ---- bookkeeping -------------------------------------------------------------------------

    def _dir(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id

    def _mnt(self, sandbox_id: str) -> Path:
        return self.mnt / sandbox_id

    def _read_state(self, sandbox_id: str) -> dict | None:
        try:
            return json.loads((self._dir(sandbox_id) / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def degradations(self) -> list[str]:
        found = []
        if self.cgroup_version is None:
            found.append("no cgroups: memory, cpu and pids limits are not enforced")
        if why := disk.available():
            found.append(f"disk: {why}: the writable layer has no quota; each file is limited to disk_mb "
                         "(RLIMIT_FSIZE) and /tmp is a tmpfs in the sandbox's memory")
        if why := permfs_missing():
            found.append(why)
        if self.network is None:
            found.append(f"no sandbox networking: {self.network_missing}")
        return found

    def leftovers(self) -> set[str]:
        ids = {p.name for p in self.root.iterdir() if p.is_dir()}
        # besides sandboxes, the server's own: code/ (the in-sandbox tree and bwrap's copy; agent-* and
        # bwrap-* where servers before it kept them) and the permission filesystem's mount (.permfs:
        # named first, as a dead daemon's mount fails is_dir)
        ids.update(p.name for p in self.mnt.iterdir()
                   if not p.name.startswith((".", "agent", "bwrap-")) and p.name != CODE_MOUNT and p.is_dir())
        ids.update(cgroups.leftovers(self.cgroup_group))
        if self.network:  # rules of a sandbox whose slot is still claimed (the claim names it)
            claims = self.uids.mine()
            ids.update(claims[slot] for slot in self.network.slots_with_rules() if slot in claims)
        return ids - (self.stems.spares() if self.stems else set())

    def close(self) -> None:
        """At server stop: stems go; with no sandbox left, this server's directory under /run too."""
        if self.stems:
            self.stems.close()
        if self.zygote:
            self.zygote.close()
        self.mount_ns.close()
        self.sources.close()
        disk.drain_removals()
        self.workspaces.close(sandboxes_left=bool(self.leftovers()))
        if self.network:
            self.network.close(sandboxes_left=bool(self.leftovers()))
            self.network = None
        if not self.leftovers():
            if os.path.ismount(self.code):
                syscalls.umount(str(self.code))
            if not mounted_under(self.mnt):
                shutil.rmtree(self.mnt, ignore_errors=True)

    # ---- create ------------------------------------------------------------------------------

    def create(self, spec: SandboxSpec, template) -> RuntimeSandbox:
        if os.geteuid() != 0:
            raise E.RuntimeFailure("the namespace runtime needs root on this host")
        sid = spec.sandbox_id
        d = self._dir(sid)
        slot = self.uids.claim(sid)
        base = uid_base(slot)
        try:
            return self._create(spec, template, d, slot, base)
        except BaseException:
            self.kill(sid)
            raise

    def _create(self, spec: SandboxSpec, template, d: Path, slot: int, base: int) -> RuntimeSandbox:
        sid = spec.sandbox_id
        d.mkdir(mode=0o700)
        (d / "lower").mkdir()
        # everything the sandbox writes to disk lands on its own filesystem of disk_mb (disk.py)
        if self.disks:
            empty = disk.mount(self.home / "disks", d / "disk.img", d / "disk", spec.limits.disk_mb)
        else:
            (d / "disk").mkdir()
            empty = None
        for sub in ("upper", "work"):
            (d / "disk" / sub).mkdir()
        os.chown(d / "disk" / "upper", base, base)
        m = self._mnt(sid)
        # Only the sandbox's bwrap (gid base) passes: nothing of the sandbox's, its layer above all,
        # is reachable by the host's other users. A tmpfs of its own: the sandbox's root writes in
        # run/ (its /run/sandlot), which must fill neither the host's disk nor its memory.
        m.mkdir(mode=0o700)
        syscalls.mount("tmpfs", str(m), "tmpfs", RUN_MOUNT_FLAGS, f"{RUN_TMPFS},mode=0710")
        os.chown(m, 0, base)  # not a gid= option: the sandbox's mountinfo shows a mount's options
        (m / "root").mkdir()
        (m / "run").mkdir(mode=0o711)  # users inside reach agent.sock (sudo) but cannot list
        (m / "pts").mkdir()
        syscalls.mount("devpts", str(m / "pts"), "devpts", syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
                       f"newinstance,ptmxmode=0666,mode=0620,gid={base + TTY_GID},max={PTYS_PER_SANDBOX}")
        write_resolv_conf(d / "disk" / "upper", slot, base)
        os.chown(m / "run", base, base)
        write_config(m / "run", contract.AgentConfig(allow_sudo=spec.allow_sudo, root_caps=SANDBOX_ROOT_CAPS,
                                                     run_as_default_user=True, ready_fd=contract.READY_FD,
                                                     **policy_settings(m / "run", spec, template)))
        (d / "state.json").write_text(json.dumps({"slot": slot, "uid_base": base, "template": spec.template,
                                                  "workspace": spec.workspace is not None, "disk_empty": empty}))
        # the sandbox's own policy (issue 13): paths it blocks (in the template and a snapshot's
        # layers), its workspace (runtimes/workspace.py)
        hidden.hide(d / "disk" / "upper", [*reversed(template.layers), template.rootfs], spec.hidden_paths(), base)
        workspace = self.workspaces.prepare(spec, template, d, base) if spec.workspace else None

        cg = SandboxCgroup(sid, self.cgroup_version, self.cgroup_group) if self.cgroup_version else None

        # bwrap reads its options from an fd: it is pid 1 inside, and a command line would show
        # host paths to anyone running `ps` there.
        if workspace:  # bound from the sandbox's run dir, where its mount namespace has it (_attach)
            (m / WORKSPACE_POINT).mkdir(mode=0o700)
            workspace = m / WORKSPACE_POINT / workspace.relative_to(self.workspaces.permfs.mount)
        argv = self._bwrap_argv(spec, template, m, policy_ops(spec, template, workspace))
        split = argv.index("--")
        args_fd = os.memfd_create("sandlot-bwrap-args", 0)
        os.write(args_fd, b"".join(a.encode() + b"\0" for a in argv[1:split]))
        os.lseek(args_fd, 0, os.SEEK_SET)
        command = ["bwrap", "--args", "6", *argv[split:]]  # argv[0] too: no host path shows
        seccomp_fd = seccomp.filter_fd()
        log_fd = os.open(d / "disk" / "sandbox.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        agent_ready_r, agent_ready_w = os.pipe()  # the agent writes once it listens (contract.READY_FD)
        fsize = spec.limits.disk_mb * MiB
        stem = (self.stems.take() or self.stems.fork_now()) if self.stems and cg else None
        if stem is not None:  # already forked and in its cgroups: the groups become the sandbox's
            try:
                cg.adopt(stem.spare, spec.limits)
                cg.set_background(spec.background)
                pid = stem.pid
                hand_over(stem, base, [log_fd, seccomp_fd, ready_w, go_r, args_fd, agent_ready_w],
                          {"bwrap": self.bwrap, "command": command, "fsize": fsize})
            except BaseException:
                discard(stem, self.cgroup_version, self.cgroup_group)
                raise
        else:
            if cg:
                cg.create(spec.limits)
                cg.set_background(spec.background)
            procs = cg.proc_files() if cg else []
            pid = os.fork()
            if pid == 0:  # child: only syscalls from here to exec
                try:
                    for path in procs:
                        with open(path, "w") as f:
                            f.write("0")
                    os.setsid()
                    own_namespace(self.mount_ns.base)
                    netns.new_netns()
                    become_sandbox(base, log_fd, seccomp_fd, ready_w, go_r, args_fd, agent_ready_w, self.bwrap,
                                   command, fsize)
                except BaseException:
                    pass
                os._exit(127)
            self._reap_in_background(pid)
        # parent
        os.close(ready_w)
        os.close(go_r)
        os.close(seccomp_fd)
        os.close(args_fd)
        os.close(log_fd)
        os.close(agent_ready_w)
        try:
            if os.read(ready_r, 1) != b"1":
                raise E.RuntimeFailure("sandbox process failed before its user namespace was ready")
            for name in ("uid_map", "gid_map"):
                if name == "gid_map":
                    Path(f"/proc/{pid}/setgroups").write_text("deny")
                Path(f"/proc/{pid}/{name}").write_text(f"0 {base} {UID_RANGE}\n")
            userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            try:  # the template, and the layers above it (snapshots: layers/mount.py)
                lowerdir = mount_lowers(d, template.rootfs, template.layers, userns, self.sources.of)
                mount_volumes(m, spec.volumes, userns)  # volumes/mount.py
            finally:
                os.close(userns)
            # nosuid: root inside may make setuid files in its layer, owned by its host uid
            # (inside, no_new_privs makes them inert; on the host only the mount flag does)
            mount_overlay(m / "root", lowerdir, d / "disk" / "upper", d / "disk" / "work",
                          syscalls.MS_NODEV | syscalls.MS_NOSUID)
            self._attach(pid, m, workspace is not None)
            os.write(go_w, b"1")
            state = json.loads((d / "state.json").read_text())
            state.update(pid=pid, started_ticks=start_ticks(pid))
            (d / "state.json").write_text(json.dumps(state))
            if spec.network is not None or spec.network_ready:  # while the agent starts
                self._network_of(sid, spec.network, pid, slot, prepare_only=spec.network is None, team=spec.team)
            wait_for_ready(agent_ready_r, d / "disk" / "sandbox.log")
        finally:
            for fd in (ready_r, go_w, agent_ready_r):
                os.close(fd)
        # The server talks to the agent through a second link made now, before any code of the
        # sandbox's has run, in a directory the sandbox cannot reach: its root could later replace
        # /run/sandlot/agent.sock with a symlink to another sandbox's socket.
        os.link(m / "run" / contract.AGENT_SOCKET_NAME, m / "agent.sock", follow_symlinks=False)
        self._slots[sid] = slot
        return RuntimeSandbox(sid, m / "agent.sock", pid, state["started_ticks"])

    def _attach(self, pid: int, m: Path, workspace: bool) -> None:
        """What bwrap binds from the host, into the sandbox process's own mount namespace
        (mount_ns.py): its run dir with the mounts below it, and for a workspace the permission
        filesystem (whole: its daemon shows a sandbox's directory to that sandbox's uids only)."""
        trees = [(syscalls.open_tree(str(m), recursive=True), m)]
        try:
            if workspace:
                trees.append((syscalls.open_tree(str(self.workspaces.permfs.mount)), m / WORKSPACE_POINT))
            self.mount_ns.attach(pid, trees)
        finally:
            for fd, _ in trees:
                os.close(fd)

    def _bwrap_argv(self, spec: SandboxSpec, template, m: Path, late=()) -> list[str]:
        # / is the overlay the parent mounted (template id-mapped below, the sandbox's layer above);
        # seccomp's fd is 3 once become_sandbox has placed it
        boot_id = m / "boot_id"  # new at each boot (a filesystem-mode resume is one)
        boot_id.write_text(f"{uuid.uuid4()}\n")
        boot_id.chmod(0o444)
        setup = sandbox_setup(spec, template, root=[bind(m / "root", "/")], code_dir=self.agent_dir,
                              run_dir=m / "run", seccomp_fd=3, caps=SANDBOX_ROOT_CAPS, boot_id=boot_id,
                              ptys=m / "pts", late=[*volume_binds(m, spec.volumes), *late],  # volumes, then the policy
                              own_netns=True,  # made by the process itself (netns.new_netns)
                              # on its disk a full /tmp kills nothing; a read-only / keeps a
                              # scratch /tmp in memory (remounting / leaves that tmpfs writable)
                              tmp_in_memory=not self.disks or not spec.security.allow_file_write)
        return render(self.bwrap, setup, contract.agent_command(template.python))

    @staticmethod
    def _reap_in_background(pid: int) -> None:
        # bwrap is our child: reap it so it never lingers as a zombie. A thread blocked in waitpid
        # costs no CPU; pidfd + event loop would need the loop here, which the runtime must not know.
        def wait():
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

        threading.Thread(target=wait, name=f"reap-{pid}", daemon=True).start()

    # ---- adopt, inspect, kill ----------------------------------------------------------------

    alive = staticmethod(alive)

    def adopt(self, sandbox_id: str) -> RuntimeSandbox | None:
        state = self._read_state(sandbox_id)
        if not state or "pid" not in state:
            return None
        pid = state["pid"]
        if start_ticks(pid) != state["started_ticks"]:
            return None
        sock = self._mnt(sandbox_id) / "agent.sock"
        if not agent_answers(sock):
            return None
        if state.get("workspace") and not self.workspaces.known(sandbox_id):
            log.error("sandbox %s: its workspace is no longer served; not adopting it", sandbox_id)
            return None
        if not self.uids.reclaim(state["slot"], sandbox_id):
            log.error("sandbox %s: its uid range is now another server's; not adopting it", sandbox_id)
            return None
        self._slots[sandbox_id] = state["slot"]
        return RuntimeSandbox(sandbox_id, sock, pid, state["started_ticks"])

    def _cgroup(self, sandbox_id: str) -> SandboxCgroup | None:
        if self.cgroup_version is None:
            return None
        return SandboxCgroup(sandbox_id, self.cgroup_version, self.cgroup_group)

    def usage(self, sandbox_id: str, previous: cgroups.Usage | None = None) -> cgroups.Usage:
        cg = self._cgroup(sandbox_id)
        if cg is None:
            return cgroups.Usage(0, 0, 0, 0)
        # one small read for an idle sandbox, not four (memory.stat's ~40 lines parsed): the
        # metrics pass reads every sandbox every 5 s (~150 -> ~40 us each)
        if previous is not None and cg.cpu_usage_ns() == previous.cpu_usage_ns:
            return previous
        return cg.usage()

    def disk_used(self, sandbox_id: str) -> int:
        d = self._dir(sandbox_id)
        state = self._read_state(sandbox_id) or {}
        # its workspace's changes are on its disk (runtimes/workspace.py); beside it, walked, for a
        # sandbox made before that
        workspace = sum(tree_usage(p) for p in d.glob("ws-upper.*"))
        if state.get("disk_empty") is None:  # no disk of its own: walk its layers
            return tree_usage(_upper(d)) + workspace + sum(tree_usage(p) for p in (d / "disk").glob("ws-upper.*"))
        return disk.used(d / "disk", state["disk_empty"]) + workspace

    def disk_written(self, sandbox_id: str) -> int:
        """Bytes its disk image holds on the host's disk (host admission, server/quotas.py)."""
        return allocated(self._dir(sandbox_id) / "disk.img")

    def writable_layer(self, sandbox_id: str) -> tuple[Path, int]:
        """The sandbox's overlay upper and the host uid that is root in it (for a commit)."""
        state = self._read_state(sandbox_id)
        d = self._dir(sandbox_id)
        if state and state.get("disk_empty") is not None and (d / "disk.img").exists():
            disk.remount(d / "disk.img", d / "disk")  # a reboot took the mount, not the image
        upper = _upper(d)
        if not state or not upper.is_dir():
            raise E.NotFound(f"sandbox {sandbox_id} has no writable layer on this host")
        return upper, state["uid_base"]

    def freeze(self, sandbox_id: str, frozen: bool) -> None:
        cg = self._cgroup(sandbox_id)
        if cg is None:
            raise E.Unsupported("pausing needs cgroups, which this host does not offer the server")
        cg.freeze(frozen)

    def foreground(self, sandbox_id: str) -> None:
        cg = self._cgroup(sandbox_id)
        if cg is not None:
            cg.set_background(False)

    def kill(self, sandbox_id: str) -> None:
        self._slots.pop(sandbox_id, None)
        d = self._dir(sandbox_id)
        state = self._read_state(sandbox_id) or {}
        cg = self._cgroup(sandbox_id)
        if cg is not None:
            cg.kill_all()
        pid = state.get("pid")
        if pid and state.get("started_ticks") and start_ticks(pid) == state["started_ticks"]:
            try:
                os.kill(pid, 9)  # outside any cgroup only if cgroups are unavailable
            except ProcessLookupError:
                pass
        if self.network:
            try:
                self.network.detach(sandbox_id, state.get("slot"))
            except Exception as e:  # a link that resists stays a leftover, swept at the next start
                log.error("sandbox %s: could not remove its network: %s", sandbox_id, e)
        m = self._mnt(sandbox_id)
        self.workspaces.release(sandbox_id, d)
        for _ in range(3):
            try:
                syscalls.umount(str(m / "root"))
            except OSError:
                break
        unmount_volumes(m)
        unmount_lowers(d)
        for mount in (d / "disk", m):
            try:
                disk.unmount(mount)  # lazily: a process still inside (an abandoned exec) holds it
            except OSError as e:
                log.error("sandbox %s: could not unmount %s: %s", sandbox_id, mount, e)
        # A step that fails does not stop the next: a directory that resists removal must not keep
        # the sandbox's cgroups or uid range. What remains is a leftover, retried at next start.
        for path in (m, d):
            try:
                # never through a mount (that could reach the template): removed where nothing is
                # mounted (mount_ns.py)
                self.mount_ns.remove_tree(path)
            except OSError as e:
                log.error("sandbox %s: %s", sandbox_id, e)
        if cg is not None:
            try:
                cg.remove()
            except OSError as e:
                log.error("sandbox %s: could not remove its cgroups: %s", sandbox_id, e)
            if cg.exists():  # its processes may live on: their uids must not go to another sandbox
                log.error("sandbox %s: its cgroups remain; keeping its uid range claimed", sandbox_id)
                return
        self.uids.release(sandbox_id, state.get("slot"))

    # ---- network (runtimes/network.py) -------------------------------------------------------

    def set_network(self, sandbox_id: str, policy: NetworkPolicy | None, adopting: bool = False,
                    team: str | None = None) -> None:
        """Give a running sandbox a network under `policy`, change its policy, or (None) take its
        network away: its link goes, only loopback stays."""
        state = self._read_state(sandbox_id) or {}
        if "pid" not in state:
            raise E.NotFound(f"sandbox \"{sandbox_id}\" not found")
        if policy is None:
            if self.network:
                self.network.detach(sandbox_id, state["slot"])
            return
        self._network_of(sandbox_id, policy, state["pid"], state["slot"], adopting=adopting,
                         started=state.get("started_ticks"), team=team)

    def _network_of(self, sandbox_id: str, policy: NetworkPolicy | None, pid: int, slot: int,
                    prepare_only: bool = False, adopting: bool = False, started: int | None = None,
                    team: str | None = None) -> None:
        if self.network is None:
            if prepare_only:
                return
            raise E.Unsupported(f"this server cannot give sandboxes a network: {self.network_missing}")
        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if started is not None and start_ticks(pid) != started:  # the pid is another process's now
                raise E.SandboxNotRunning(f"sandbox \"{sandbox_id}\" is not running")
            if prepare_only:
                self.network.prepare(slot, netns)
            else:
                self.network.attach(sandbox_id, slot, netns, policy, adopting=adopting, team=team)
        except OSError as e:
            raise E.RuntimeFailure(f"sandbox {sandbox_id}: could not set up its network link: {e}") from e
        finally:
            os.close(netns)

    def port_socket(self, rt: RuntimeSandbox, family: int = socket.AF_INET) -> socket.socket:
        """A TCP socket inside the sandbox's network namespace, to connect to a port a process of
        its listens on (loopback included): how the port proxy reaches in, network or not."""
        try:
            netns = os.open(f"/proc/{rt.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise E.SandboxNotRunning(f"sandbox \"{rt.sandbox_id}\" is not running") from None
        try:
            if start_ticks(rt.pid) != rt.started_ticks:  # the pid is another process's now
                raise E.SandboxNotRunning(f"sandbox \"{rt.sandbox_id}\" is not running")
            return links.socket_in(netns, family)
        finally:
            os.close(netns)

    def network_usage(self, sandbox_id: str) -> tuple[int, int]:
        """(bytes sent, bytes received) by the sandbox through its link; (0, 0) without one."""
        if self.network is None:
            return 0, 0
        slot = self._slots.get(sandbox_id)
        if slot is None:  # not made or adopted by this runtime object: its state names it
            slot = (self._read_state(sandbox_id) or {}).get("slot")
        return (0, 0) if slot is None else self.network.usage(slot)


def _upper(d: Path) -> Path:
    """The sandbox's overlay upper: on its disk, or (a sandbox an earlier version made and this one
    adopted) beside its state."""
    on_disk = d / "disk" / "upper"
    return on_disk if on_disk.is_dir() or not (d / "upper").is_dir() else d / "upper"
