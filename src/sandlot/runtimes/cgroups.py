"""Per-sandbox cgroups: memory, cpu and pids limits, usage readings, freezing, cleanup.

Supports cgroup v1 (one hierarchy per controller, as on these machines) and the v2 unified
hierarchy. Every sandbox gets `<group>/<id>` in each hierarchy, where the group names one server
(`sandlot-<hash of its state dir>`), so servers never touch each other's sandboxes; `remove()` kills
what is left and deletes the directories, so a sandbox's cgroups never outlive it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .policy import Limits

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
V2_CONTROLLERS = ("memory", "pids", "cpu")  # the freezer is built into every v2 group
CFS_PERIOD_US = 100_000
FREEZE_WAIT = 5.0  # s: a freeze waits this long for every task to stop
log = logging.getLogger("sandlot.runtime")
# CPU weight (v1 cpu.shares, v2 cpu.weight): a pool sandbox warming up gets only CPU that live
# sandboxes leave unused, so refilling a pool never slows the sandbox just claimed from it.
CPU_WEIGHT = {"v1": {False: "1024", True: "2"}, "v2": {False: "100", True: "1"}}


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> bytes:
    """A cgroup file's content, in os.read calls: the metrics sampler reads four files of every
    sandbox every 5 s, and pathlib's read_text and a str parse took ~4x the reads themselves."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return default


def detect() -> str | None:
    """'v1', 'v2', or None when this process cannot manage cgroups (not root, read-only)."""
    if os.geteuid() != 0:
        return None
    if (ROOT / "cgroup.controllers").exists():
        return "v2" if os.access(ROOT, os.W_OK) else None
    if all((ROOT / c).is_dir() for c in ("memory", "pids", "cpu", "freezer")):
        return "v1"
    return None


@dataclass
class Usage:
    memory_bytes: int
    memory_cache_bytes: int
    cpu_usage_ns: int
    pids: int


class SandboxCgroup:
    """The cgroup(s) of one sandbox."""

    def __init__(self, sandbox_id: str, version: str, group: str):
        self.version = version
        if version == "v1":
            self.dirs = {c: ROOT / c / group / sandbox_id for c in V1_CONTROLLERS}
        else:
            self.dirs = {"unified": ROOT / group / sandbox_id}

    def _dir(self, controller: str) -> Path:
        return self.dirs.get(controller) or self.dirs["unified"]

    def create(self, limits: Limits) -> None:
        self.make_dirs()
        self.set_limits(limits)

    def make_dirs(self) -> None:
        if self.version == "v1":
            for d in self.dirs.values():
                for _ in range(10):  # another sandbox's remove() may rmdir the parent meanwhile
                    try:
                        d.mkdir(parents=True, exist_ok=True)
                        break
                    except FileNotFoundError:
                        continue
        else:
            parent = self.dirs["unified"].parent
            parent.mkdir(exist_ok=True)
            _enable_controllers(ROOT)
            _enable_controllers(parent)
            self.dirs["unified"].mkdir(exist_ok=True)

    def adopt(self, spare: str, limits: Limits) -> None:
        """Take over the groups named `spare` (a stem's, with the stem inside) under our name."""
        for d in self.dirs.values():
            os.rename(d.parent / spare, d)
        self.set_limits(limits)

    def set_limits(self, limits: Limits) -> None:
        mem = limits.memory_mb * 1024 * 1024
        quota = int(limits.cpu_count * CFS_PERIOD_US)
        if self.version == "v1":
            m = self.dirs["memory"]
            _write(m / "memory.limit_in_bytes", str(mem))
            try:  # no swap escape hatch: memory+swap capped at the same value
                _write(m / "memory.memsw.limit_in_bytes", str(mem))
            except OSError:
                pass
            _write(m / "memory.oom_control", "0")  # OOM killer on, inside this group only
            _write(self.dirs["pids"] / "pids.max", str(limits.pids))
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        else:
            d = self.dirs["unified"]
            _write(d / "memory.max", str(mem))
            try:  # as memsw on v1; absent where the kernel does no swap accounting
                _write(d / "memory.swap.max", "0")
            except OSError:
                pass
            _write(d / "memory.oom.group", "0")
            _write(d / "pids.max", str(limits.pids))
            _write(d / "cpu.max", f"{quota} {CFS_PERIOD_US}")

    def set_background(self, background: bool) -> None:
        if self.version == "v1":
            _write(self.dirs["cpu"] / "cpu.shares", CPU_WEIGHT["v1"][background])
        else:
            _write(self.dirs["unified"] / "cpu.weight", CPU_WEIGHT["v2"][background])

    def proc_files(self) -> list[str]:
        """The cgroup.procs files a new process must be written into (used by the spawner)."""
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs.values())

    def pids(self) -> list[int]:
        path = self._dir("pids") / "cgroup.procs"
        try:
            return [int(x) for x in path.read_text().split()]
        except OSError:
            return []

    def cpu_usage_ns(self) -> int:
        if self.version == "v1":
            return _read_int(self.dirs["cpuacct"] / "cpuacct.usage")
        return _kv(self.dirs["unified"] / "cpu.stat").get("usage_usec", 0) * 1000

    def usage(self) -> Usage:
        if self.version == "v1":
            m, a = self.dirs["memory"], self.dirs["cpuacct"]
            stat = _kv(m / "memory.stat")
            return Usage(
                memory_bytes=_read_int(m / "memory.usage_in_bytes") - stat.get("total_inactive_file", 0),
                memory_cache_bytes=stat.get("total_cache", 0),
                cpu_usage_ns=_read_int(a / "cpuacct.usage"),
                pids=_read_int(self.dirs["pids"] / "pids.current"),
            )
        d = self.dirs["unified"]
        stat = _kv(d / "memory.stat")
        return Usage(
            memory_bytes=_read_int(d / "memory.current") - stat.get("inactive_file", 0),
            memory_cache_bytes=stat.get("file", 0),
            cpu_usage_ns=_kv(d / "cpu.stat").get("usage_usec", 0) * 1000,
            pids=_read_int(d / "pids.current"),
        )

    def oom_killed(self) -> bool:
        if self.version == "v1":
            return _kv(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0) > 0
        return _kv(self.dirs["unified"] / "memory.events").get("oom_kill", 0) > 0

    def freeze(self, frozen: bool) -> None:
        """Freeze or thaw the group's processes. Freezing returns once they all are: the kernel
        takes the write as a request that each task meets at its next stop (a pause or a snapshot
        made before that would catch processes still running). A task that does not freeze in
        FREEZE_WAIT (one in an uninterruptible wait) is logged, and the group stays freezing."""
        if self.version == "v1":
            _write(self.dirs["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED")
        else:
            _write(self.dirs["unified"] / "cgroup.freeze", "1" if frozen else "0")
        if not frozen:
            return
        deadline, pause = time.monotonic() + FREEZE_WAIT, 0.0005
        while not self.frozen():
            if time.monotonic() > deadline:
                log.warning("cgroup %s: its processes did not all freeze within %g s", self._dir("freezer"),
                            FREEZE_WAIT)
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def frozen(self) -> bool:
        if self.version == "v1":  # reading the state is what checks the tasks (FREEZING until all are)
            return (self.dirs["freezer"] / "freezer.state").read_text().strip() == "FROZEN"
        return _kv(self.dirs["unified"] / "cgroup.events").get("frozen", 0) == 1

    def kill_all(self) -> None:
        """SIGKILL every process in the group (a frozen group is thawed so the kills land)."""
        if self.version == "v2" and (self.dirs["unified"] / "cgroup.kill").exists():
            _write(self.dirs["unified"] / "cgroup.kill", "1")
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            try:
                self.freeze(False)
            except OSError:
                pass
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy: processes still exiting
                    time.sleep(0.01)
            try:  # the shared parent goes too once empty, so an idle host shows no sandlot cgroups
                d.parent.rmdir()
            except OSError:
                pass


def _enable_controllers(group: Path) -> None:
    """Let the children of a v2 group use the controllers sandboxes need. Only missing ones are
    written, one at a time: the root group may belong to systemd or a container runtime, which may
    have enabled some already, lack one, or refuse the write (a group with processes of its own). A
    controller still missing then fails the first limit written, with the file's name."""
    try:
        enabled = set((group / "cgroup.subtree_control").read_text().split())
    except OSError:
        enabled = set()
    for controller in V2_CONTROLLERS:
        if controller not in enabled:
            try:
                _write(group / "cgroup.subtree_control", "+" + controller)
            except OSError as e:
                log.warning("cannot enable the %s controller in %s: %s", controller, group, e)


def _kv(path: Path) -> dict[str, int]:
    """A flat keyed file ("name value" lines); lines whose value is no integer are left out."""
    out = {}
    try:
        data = _read(path)
    except OSError:
        return out
    for line in data.splitlines():
        k, _, v = line.partition(b" ")
        try:
            out[k.decode()] = int(v)
        except ValueError:
            pass
    return out


def leftovers(group: str) -> list[str]:
    """Names of the sandbox cgroups of one server's group (for adoption and leak checks)."""
    names: set[str] = set()
    for base in [ROOT / c / group for c in V1_CONTROLLERS] + [ROOT / group]:
        if base.is_dir():
            names.update(p.name for p in base.iterdir() if p.is_dir())
    return sorted(names)
