"""Which host limit N sandboxes would hit: what a sandbox takes of each countable resource (measured
as the difference a number of sandboxes made), against the sysctls and rlimits of this host.

Each sandbox runs as its own host uid range and makes its own user namespace, so per-uid limits
(inotify instances, keys, namespaces per user) count one sandbox each; the host-wide ones (pids,
threads, file handles, memory cgroup ids, ptys, the host's mount table) and the server's own
(fds, threads, memory maps) add up over all sandboxes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
MEMCG_ID_MAX = 65535  # the kernel's memory cgroup ids (dying groups hold theirs until their pages go)


def _sysctl(name: str) -> int | None:
    try:
        return int(Path("/proc/sys/" + name.replace(".", "/")).read_text().split()[0])
    except (OSError, ValueError):
        return None


def _rlimit(pid: int, what: str) -> int | None:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(what):
            soft = line[len(what):].split()[0]
            return None if soft == "unlimited" else int(soft)
    return None


def _num_cgroups(controller: str) -> int:
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[0] == controller:
            return int(fields[2])
    return 0


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def footprint(server_pid: int) -> dict[str, float]:
    """What the host and the server hold now, of each resource sandboxes take."""
    meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()}
    claims = Path("/run/sandlot/uids")
    return {
        "server_fds": len(os.listdir(f"/proc/{server_pid}/fd")),
        "server_threads": _status(server_pid, "Threads"),
        "server_maps": len(Path(f"/proc/{server_pid}/maps").read_text().splitlines()),
        "tasks": int(Path("/proc/loadavg").read_text().split()[3].split("/")[1]),
        "file_handles": int(Path("/proc/sys/fs/file-nr").read_text().split()[0]),
        "host_mounts": len(Path("/proc/self/mountinfo").read_text().splitlines()),
        "memcgs": _num_cgroups("memory"),
        "key_users": len(Path("/proc/key-users").read_text().splitlines()),
        "uid_claims": len([p for p in claims.iterdir() if p.name.isdigit()]) if claims.is_dir() else 0,
        "mem_available": meminfo["MemAvailable"],
    }


def per_sandbox(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    per = {k: (after[k] - before[k]) / n for k in before}
    per["mem_available"] = -per["mem_available"]  # taken, not added
    return per


def cgroup_memory(group: str, sandbox_id: str) -> int:
    try:
        return int((CGROUP / "memory" / group / sandbox_id / "memory.usage_in_bytes").read_text())
    except OSError:
        return 0


def unshare_mount_ms(runs: int = 10) -> float:
    """Median time to make a mount namespace on the host (it copies the host's mount table)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(["unshare", "--mount", "true"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def check(n: int, per: dict[str, float], server_pid: int | None = None) -> list[str]:
    """Markdown: for each resource, what `n` sandboxes need against this host's limit."""
    from sandlot.runtimes.uids import MAX_SLOTS

    now = footprint(server_pid or os.getpid())
    pty_max, pty_reserve = _sysctl("kernel.pty.max"), _sysctl("kernel.pty.reserve") or 0
    rows = [
        # resource, per sandbox, needed for n (host-wide: what exists now plus n more), limit, note
        ("uid slots (/run/sandlot/uids)", per["uid_claims"], now["uid_claims"] + n * per["uid_claims"], MAX_SLOTS,
         "runtimes/uids.py MAX_SLOTS, shared by all servers of the host"),
        ("server fds", per["server_fds"], now["server_fds"] + n * per["server_fds"],
         _rlimit(server_pid, "Max open files") if server_pid else None, "RLIMIT_NOFILE of the server"),
        ("server threads", per["server_threads"], now["server_threads"] + n * per["server_threads"],
         _sysctl("kernel.threads-max"), "kernel.threads-max (a waitpid thread per sandbox the server forks itself, when the stem zygote is not running: namespace.py)"),
        ("server memory maps", per["server_maps"], now["server_maps"] + n * per["server_maps"],
         _sysctl("vm.max_map_count"), "vm.max_map_count (each thread's stack and guard)"),
        ("host tasks (processes + threads)", per["tasks"], now["tasks"] + n * per["tasks"],
         min(x for x in (_sysctl("kernel.pid_max"), _sysctl("kernel.threads-max")) if x),
         "kernel.pid_max, kernel.threads-max"),
        ("host file handles", per["file_handles"], now["file_handles"] + n * per["file_handles"],
         _sysctl("fs.file-max"), "fs.file-max"),
        ("mounts in the host's mount namespace", per["host_mounts"], now["host_mounts"] + n * per["host_mounts"],
         _sysctl("fs.mount-max"), "fs.mount-max (a sandbox's namespace copies the runtime's base, not this: runtimes/mount_ns.py)"),
        ("memory cgroups (host-wide)", per["memcgs"], now["memcgs"] + n * per["memcgs"], MEMCG_ID_MAX,
         "memory cgroup ids (65535); removed groups hold theirs while their page cache lives"),
        ("users with keys (/proc/key-users)", per["key_users"], now["key_users"] + n * per["key_users"], None,
         "no host-wide limit; per uid kernel.keys.maxkeys = %s" % _sysctl("kernel.keys.maxkeys")),
        ("ptys in sandboxes' devpts (all of them)", 0, None, (pty_max - pty_reserve) if pty_max else None,
         "kernel.pty.max - kernel.pty.reserve, shared by every sandbox's terminals"),
        ("host memory, MiB", per["cgroup_memory"] / 2**20, n * per["cgroup_memory"] / 2**20,
         round(now["mem_available"] / 2**20),
         "MemAvailable now, against each sandbox's cgroup memory (kernel memory it caused included); "
         f"MemAvailable fell by {per['mem_available'] / 2**20:.1f} MiB per sandbox (other work too)"),
    ]
    lines = [f"Host limits for {n} sandboxes (per sandbox: measured as the difference a number of sandboxes "
             "made; needed: what exists now plus that many more):", "",
             "| resource | per sandbox | needed | limit here | verdict | what limits it |", "|---|---|---|---|---|---|"]
    for name, one, needed, limit, note in rows:
        if needed is None:
            verdict = "per use"
        elif limit is None:
            verdict = "no limit"
        else:
            verdict = "ok" if needed <= limit else "**hit**"
        lines.append(f"| {name} | {one:.2f} | {'' if needed is None else f'{needed:.0f}'} | "
                     f"{'' if limit is None else limit} | {verdict} | {note} |")
    per_uid = ", ".join(f"{k} {_sysctl(k)}" for k in (
        "user.max_user_namespaces", "user.max_mnt_namespaces", "user.max_pid_namespaces", "user.max_net_namespaces",
        "fs.inotify.max_user_instances", "fs.inotify.max_user_watches", "kernel.keys.maxkeys"))
    lines += ["", f"Per-uid limits (each sandbox is its own uid range, so each counts one sandbox): {per_uid}."]
    return lines
