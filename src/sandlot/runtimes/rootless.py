"""The rootless runtime: sandboxes for a server run by an ordinary user.

Without root there is no uid range to hand out, no overlay or mount on the host and no cgroup, so:

- bwrap makes an unprivileged user namespace in which `user` (1000) is the server's own uid: every
  sandbox of this server runs as that one host uid, kept apart by namespaces and seccomp only.
- / is the template's root filesystem bound read-only; writable are a per-sandbox /home/user (a
  host directory, seeded from the template's) and size-limited tmpfs /tmp and /dev/shm.
- Limits are rlimits, set on the sandbox's first process while bwrap holds it (--block-fd) before it
  starts anything: RLIMIT_DATA for memory (RLIMIT_AS would also count reserved address space, which
  Node.js and the JVM reserve by gigabytes), RLIMIT_NPROC for processes, RLIMIT_FSIZE per file.
  Since Linux 5.14 the kernel counts RLIMIT_NPROC per user namespace, i.e. per sandbox.

What a sandbox owns on the host: <home>/sandboxes/<id>/ (home, agent socket dir, a second link to the
agent's socket that only the server reaches, accounts, state, log) and its processes, which all live
in its pid namespace: kill() kills that namespace's init (the kernel then kills the rest), lets the
bwrap outside reap it and exit, then removes the directory. No mount is made on the host, and no
--die-with-parent: sandboxes outlive a server restart and are adopted.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from .. import _exceptions as E
from ..hostfs import remove_tree, tree_usage
from ..protocol import contract
from . import seccomp
from .agent_setup import agent_answers, install_agent, policy_settings, wait_for_agent, write_config
from .bwrap import (Op, bind, bwrap_path, policy_ops, remount_ro, render, ro_bind, sandbox_setup, tmp_size, tmpfs,
                    unshare)
from .cgroups import Usage
from .interface import RuntimeSandbox
from .policy import BWRAP_ENV, Limits, MiB, SandboxSpec
from .sandbox_process import alive, start_ticks

SANDBOX_UID = 1000  # `user` in every template; inside the sandbox it is the server's own uid
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL
SANDBOX_ID_LEN = 20  # see server.pools.new_sandbox_id
PER_USERNS_NPROC = tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (5, 14)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

log = logging.getLogger("sandlot.runtime")
# veths and firewall rules take root on the host
NO_NETWORK = "sandbox networks need the namespace runtime (a server run as root)"


class RootlessRuntime:
    name = "rootless"
    workspaces = None  # a workspace mounts on the host: root only
    network_missing = NO_NETWORK  # why sandboxes get no network here (read by the service)

    def __init__(self, home: Path):
        self.home = home
        self.root = home / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        longest = self.root / ("x" * SANDBOX_ID_LEN) / "agent.sock"
        if len(str(longest.resolve())) > SOCKET_PATH_MAX:
            raise E.RuntimeFailure(f"the state directory {home} is too deep for the sandboxes' unix sockets "
                                   f"({SOCKET_PATH_MAX} bytes at most): use a shorter SANDLOT_HOME")
        (home / "agent").mkdir(exist_ok=True)
        self.agent_dir = install_agent(home / "agent")
        self.bwrap = bwrap_path()
        probe = subprocess.run([self.bwrap, "--unshare-user", "--ro-bind", "/", "/", "true"],
                               capture_output=True, text=True, check=False)
        self.userns_error = probe.stderr.strip() if probe.returncode else None

    def _dir(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id

    def _read_state(self, sandbox_id: str) -> dict:
        try:
            return json.loads((self._dir(sandbox_id) / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def degradations(self) -> list[str]:
        nproc = ("processes: RLIMIT_NPROC = pids, counted per sandbox" if PER_USERNS_NPROC else
                 "processes: RLIMIT_NPROC, counted over all your processes (kernel < 5.14), so each "
                 "sandbox may start `pids` processes beyond what ran when it was created")
        found = [
            (f"not root: every sandbox runs as your host uid {os.getuid()}, separated from the others "
             "and from your files by namespaces and seccomp only, not by uid"),
            ("no cgroups: memory is limited per process (RLIMIT_DATA = memory_mb), not per sandbox; "
             "CPU is not limited; pause/resume is unavailable"),
            nproc,
            ("disk: only the size of each file is limited (RLIMIT_FSIZE = disk_mb); /home/user is a "
             "host directory without a quota"),
            "no root inside sandboxes: sudo is refused and there is no 'root' account (user='root' fails)",
            "terminals: no bound per sandbox (bwrap's /dev/pts draws on the host's shared 3072)",
            "read-only root filesystem: only /home/user, /tmp and /dev/shm are writable",
        ]
        if self.userns_error:
            found.insert(0, f"user namespaces are unavailable to this user, no sandbox can start: "
                            f"{self.userns_error}")
        return found

    def leftovers(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()}

    def close(self) -> None:
        """At server stop: with no sandbox left, remove the agent's code (installed again at start)."""
        if not self.leftovers():
            shutil.rmtree(self.home / "agent", ignore_errors=True)

    # ---- create ------------------------------------------------------------------------------

    def create(self, spec: SandboxSpec, template) -> RuntimeSandbox:
        if spec.network is not None:
            raise E.Unsupported(NO_NETWORK)
        if template.layers or spec.volumes:
            raise E.Unsupported("snapshots and volumes need the namespace runtime (a server run as root)")
        try:
            return self._create(spec, template, self._dir(spec.sandbox_id))
        except BaseException:
            self.kill(spec.sandbox_id)
            raise

    def _create(self, spec: SandboxSpec, template, d: Path) -> RuntimeSandbox:
        if spec.workspace is not None or spec.hidden_paths():
            raise E.Unsupported("workspaces and blocked paths need a server run as root (they mount on the host)")
        d.mkdir(mode=0o700)
        (d / "run").mkdir()
        _seed_home(template.rootfs / "home" / "user", d / "home")
        _accounts(template.rootfs / "etc" / "passwd", d / "passwd")
        write_config(d / "run", contract.AgentConfig(allow_sudo=False, **policy_settings(d / "run", spec, template)))
        seccomp_fd = seccomp.filter_fd()
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        setup = sandbox_setup(
            spec, template,
            root=[
                # an unprivileged user namespace, in which `user` is this server's own uid
                *unshare("user"), Op("--uid", (str(SANDBOX_UID),)), Op("--gid", (str(SANDBOX_UID),)),
                # bwrap tells the child's pid, then waits until _limit has set its rlimits
                Op("--info-fd", (str(info_w),)), Op("--block-fd", (str(block_r),)),
                ro_bind(template.rootfs, "/"), bind(d / "home", "/home/user"),
                # mount points for the agent, which the read-only root cannot provide
                tmpfs("/opt"), tmpfs("/run")],
            code_dir=self.agent_dir, run_dir=d / "run", seccomp_fd=seccomp_fd,
            # tmpfs made during setup belong to `user`: only the size-limited ones stay writable
            late=[tmpfs("/dev/shm", perms="1777", size=tmp_size(spec.limits)),
                  remount_ro("/dev"), remount_ro("/opt"), remount_ro("/run"),
                  ro_bind(d / "passwd", "/etc/passwd"), *policy_ops(spec, template, None)],
            sudo_shim=_exists(template, contract.SUDO_SHIM_PATH))
        argv = render(self.bwrap, setup, contract.agent_command(template.python))
        child_fds = (seccomp_fd, info_w, block_r)
        try:
            try:
                with open(d / "sandbox.log", "ab") as log:
                    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            pass_fds=child_fds, start_new_session=True, env=BWRAP_ENV)
            finally:
                for fd in child_fds:
                    os.close(fd)
            threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
            info = b""
            while chunk := os.read(info_r, 4096):  # bwrap closes it once it wrote the child's pid
                info += chunk
            try:
                child = json.loads(info)["child-pid"]
            except (ValueError, KeyError):
                raise E.RuntimeFailure("bwrap failed: " + (d / "sandbox.log").read_text()[-2000:].strip()) from None
            state = {"template": spec.template, "pid": proc.pid, "started_ticks": start_ticks(proc.pid),
                     "child_pid": child, "child_ticks": start_ticks(child)}
            (d / "state.json").write_text(json.dumps(state))
            _limit(child, spec.limits)
            os.write(block_w, b"1")
        except BaseException:
            self.kill(spec.sandbox_id)  # before block_w closes: bwrap goes on when it closes unwritten
            raise
        finally:
            os.close(info_r)
            os.close(block_w)
        wait_for_agent(d / "run" / contract.AGENT_SOCKET_NAME, proc.pid, d / "sandbox.log")
        # Every process in the sandbox may replace the socket in its /run/sandlot (same uid as the
        # agent), e.g. by a symlink to another sandbox's. The server connects through a second
        # link to the agent's socket, made before anything else runs, where no sandbox can reach.
        os.link(d / "run" / contract.AGENT_SOCKET_NAME, d / "agent.sock")
        return RuntimeSandbox(spec.sandbox_id, d / "agent.sock", proc.pid, state["started_ticks"])

    # ---- adopt, inspect, kill ----------------------------------------------------------------

    alive = staticmethod(alive)

    def adopt(self, sandbox_id: str) -> RuntimeSandbox | None:
        state = self._read_state(sandbox_id)
        if "child_ticks" not in state or not _running(state):
            return None
        sock = self._dir(sandbox_id) / "agent.sock"
        if not agent_answers(sock):
            return None
        return RuntimeSandbox(sandbox_id, sock, state["pid"], state["started_ticks"])

    def usage(self, sandbox_id: str, previous: Usage | None = None) -> Usage:
        """Summed over the processes of the sandbox's pid namespace; cpu includes exited ones
        (their time is in their parents' cutime/cstime)."""
        state = self._read_state(sandbox_id)
        try:
            if not _running(state):
                raise OSError
            ns = os.readlink(f"/proc/{state['child_pid']}/ns/pid")
        except OSError:
            return Usage(0, 0, 0, 0)
        rss = ticks = pids = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != ns:
                    continue
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # gone, or not ours
                continue
            ticks += sum(int(x) for x in fields[11:15])
            rss += int(fields[21]) * PAGE_SIZE
            pids += 1
        return Usage(memory_bytes=rss, memory_cache_bytes=0, cpu_usage_ns=ticks * 1_000_000_000 // CLK_TCK,
                     pids=pids)

    def disk_used(self, sandbox_id: str) -> int:
        return tree_usage(self._dir(sandbox_id) / "home")

    def set_network(self, sandbox_id: str, policy, adopting: bool = False, team: str | None = None) -> None:
        if policy is not None:
            raise E.Unsupported(NO_NETWORK)

    def freeze(self, sandbox_id: str, frozen: bool) -> None:
        raise E.Unsupported("pausing needs cgroups (the freezer), which this server does not have: it runs "
                            "without root (rootless runtime)")

    def writable_layer(self, sandbox_id: str) -> tuple[Path, int]:
        raise E.Unsupported("snapshots, fork and filesystem pause need the namespace runtime (a server "
                            "run as root): this one has no writable layer to commit")

    def foreground(self, sandbox_id: str) -> None:
        pass  # no cgroups, and an ordinary user could not undo a lowered priority (nice)

    def kill(self, sandbox_id: str) -> None:
        state = self._read_state(sandbox_id)
        init = state.get("child_pid"), state.get("child_ticks")
        outer = state.get("pid"), state.get("started_ticks")
        _sigkill(*init)  # the kernel then kills every process of the pid namespace
        # bwrap outside exits once it has reaped that init (it is reaped in turn: no zombie left)
        if not _ended(*outer, within=5):
            _sigkill(*outer)
        if not _ended(*init, within=5):
            raise E.RuntimeFailure(f"sandbox {sandbox_id}: processes remain after SIGKILL")
        try:
            _remove(self._dir(sandbox_id))
        except OSError as e:  # left for the next start's clean-up (leftovers) to retry
            log.error("sandbox %s: %s", sandbox_id, e)


def _sigkill(pid: int | None, ticks: int | None) -> None:
    if pid and ticks and start_ticks(pid) == ticks:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ended(pid: int | None, ticks: int | None, within: float) -> bool:
    """Wait until the process is gone (or a zombie, which a pid namespace's init only becomes once
    the kernel has emptied the namespace)."""
    deadline = time.monotonic() + within
    while pid and ticks and start_ticks(pid) == ticks:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _running(state: dict) -> bool:
    return all(state.get(k) and start_ticks(state[p]) == state[k]
               for p, k in (("pid", "started_ticks"), ("child_pid", "child_ticks")))


def _limit(pid: int, limits: Limits) -> None:
    """Set the sandbox's rlimits on its first process (everything in it inherits them), soft = hard so
    nothing inside can raise them again."""
    nproc = limits.pids if PER_USERNS_NPROC else _own_tasks() + limits.pids
    for which, value in ((resource.RLIMIT_DATA, limits.memory_mb * MiB),
                         (resource.RLIMIT_FSIZE, limits.disk_mb * MiB),
                         (resource.RLIMIT_NPROC, nproc)):
        hard = resource.prlimit(pid, which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.prlimit(pid, which, (value, value))


def _own_tasks() -> int:
    """Threads of this uid on the host: what RLIMIT_NPROC counts before Linux 5.14."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == os.getuid():
                total += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return total


def _accounts(passwd: Path, dest: Path) -> None:
    """The template's accounts that exist in the sandbox's user namespace: `user`, and nobody (as
    which owners that are not mapped, root among them, appear). Without a `root` account, requests
    as user="root" fail as for any unknown user instead of running with `user`'s rights."""
    keep = ([str(SANDBOX_UID)], ["65534"])
    dest.write_text("".join(line for line in passwd.read_text().splitlines(keepends=True)
                            if line.split(":")[2:3] in keep))


def _exists(template, path: str) -> bool:
    """Whether `path` exists in the sandbox's view of the template: in the last bind that covers
    it, else in the root filesystem (a read-only root cannot get new mount points)."""
    for host, inside in reversed(template.ro_binds):
        if path == inside or path.startswith(inside.rstrip("/") + "/"):
            return os.path.exists(host + path[len(inside.rstrip("/")):])
    return os.path.exists(template.rootfs / path.lstrip("/"))


def _seed_home(skeleton: Path, home: Path) -> None:
    try:
        shutil.copytree(skeleton, home, symlinks=True)
    except (OSError, shutil.Error):  # e.g. a template built by root, with a home we may not read
        _remove(home)
        home.mkdir(mode=0o700)


def _remove(path: Path) -> None:
    """rm -rf, also through directories a sandbox left without write or search permission (they
    are ours: same uid, so we may chmod them first). Any depth; symlinks are removed, never
    followed (chmod -R does not follow the links it meets). Raises OSError if anything remains."""
    try:
        remove_tree(path)
    except OSError:
        subprocess.run(["chmod", "-R", "u+rwx", "--", str(path)], stdin=subprocess.DEVNULL,
                       capture_output=True, check=False)
        remove_tree(path)
