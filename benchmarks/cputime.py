"""CPU time of a benchmark run, by who spent it, read from /proc and the cgroups (no sampling).

- server: the `sandlot serve` process (all its threads; /proc/PID/stat, clock ticks), and apart
  from it what its reaped children used outside any sandbox cgroup (cutime + cstime);
- sandboxes: the cpuacct counter (ns) of the server's cgroup group (`sandlot-<hash>`), the parent
  of every sandbox's group and of its stems' spare groups. cgroup v1 charges each ancestor as it
  goes, so the counter keeps what exited processes used (a short command, a killed sandbox);
- client: this process (getrusage, us).

Per-process breakdowns of live sandboxes (`by_command`) come from schedstat (ns, the running
threads) plus the reaped children's ticks, grouped by command name.
"""

from __future__ import annotations

import os
import resource
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TICK = 1 / os.sysconf("SC_CLK_TCK")
CGROUP = Path("/sys/fs/cgroup")


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state is [0], utime [11], stime [12],
    cutime [13], cstime [14])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """Seconds of CPU the process (all its threads) has used."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) * TICK


def group_usage_s(group: str) -> float:
    """Seconds of CPU the cgroup group (v1 cpuacct, else v2 cpu.stat) has used, 0 if it is gone."""
    for path in (CGROUP / "cpuacct" / group / "cpuacct.usage", CGROUP / "cpu,cpuacct" / group / "cpuacct.usage"):
        try:
            return int(path.read_text()) / 1e9
        except OSError:
            continue
    try:
        for line in (CGROUP / group / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return 0.0


@dataclass
class Sample:
    server: float
    server_children: float
    sandboxes: float
    client: float

    def __sub__(self, other: Sample) -> Sample:
        return Sample(self.server - other.server, self.server_children - other.server_children,
                      self.sandboxes - other.sandboxes, self.client - other.client)

    @property
    def total(self) -> float:
        return self.server + self.server_children + self.sandboxes + self.client

    def per_op_ms(self, n: int) -> dict[str, float]:
        return {"total": self.total / n * 1000, "server": (self.server + self.server_children) / n * 1000,
                "sandboxes": self.sandboxes / n * 1000, "client": self.client / n * 1000}


class RunCPU:
    """CPU of one server's run: `sample()` before and after a phase, subtract."""

    def __init__(self, server_pid: int, cgroup_group: str):
        self.pid, self.group = server_pid, cgroup_group

    def sample(self) -> Sample:
        f = _stat(self.pid)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return Sample(server=(int(f[11]) + int(f[12])) * TICK, server_children=(int(f[13]) + int(f[14])) * TICK,
                      sandboxes=group_usage_s(self.group), client=usage.ru_utime + usage.ru_stime)


def descendants(root: int) -> list[int]:
    """Every live process below `root` (not itself)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(int(_stat(int(name))[1]), []).append(int(name))
            except (OSError, IndexError):
                pass
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _own_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def by_command(pids: list[int]) -> Counter[str]:
    """Seconds of CPU per command name: each live process's own (ns) and what its reaped children
    used (ticks, credited to `<name>'s children`)."""
    found: Counter[str] = Counter()
    for pid in pids:
        try:
            f = _stat(pid)
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            found[comm] += _own_ns(pid) / 1e9
            found[comm + "'s children"] += (int(f[13]) + int(f[14])) * TICK
        except (OSError, IndexError):
            pass  # gone meanwhile
    return +found
