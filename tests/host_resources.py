"""What sandboxes hold on the host: processes, network namespaces, mounts, directories, cgroups, uid
claims. Found by ownership (a server's uid slots, cgroup group, state and mount directories; one
sandbox's id and pid namespace), because other servers with sandboxes of their own may run on the
same machine at the same time.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

from sandlot.runtimes.namespace import mount_root
from sandlot.runtimes.uids import CLAIMS, UID_FIRST, UID_RANGE, UidRanges

CGROUP_ROOT = Path("/sys/fs/cgroup")
_NS = re.compile(r"^net:\[(\d+)\]$")


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def walk(top: Path, depth: int) -> tuple[list[Path], list[str]]:
    """The entries below `top`, `depth` levels down (what Path.glob("*/*...") finds, dot names
    too), and the dead mounts met there: a FUSE mount whose daemon died answers every stat with
    ENOTCONN ("transport endpoint is not connected"), which makes glob raise. Reported as leaks by
    the callers, never raised: one left by a killed daemon must not crash every later leak check."""
    found: list[Path] = []
    dead: list[str] = []
    level = [top]
    for _ in range(depth):
        below = []
        for directory in level:
            try:
                with os.scandir(directory) as entries:
                    items = list(entries)
            except OSError as e:
                if e.errno == errno.ENOTCONN:
                    dead.append(str(directory))
                continue  # gone meanwhile, or not a directory
            for entry in items:
                path = Path(entry.path)
                try:  # lstat, not the entry's type: only a stat reaches the filesystem mounted there
                    is_dir = stat.S_ISDIR(os.lstat(entry.path).st_mode)
                except OSError as e:
                    if e.errno == errno.ENOTCONN:
                        dead.append(entry.path)
                        continue
                    is_dir = False
                found.append(path)
                if is_dir:
                    below.append(path)
        level = below
    return found, dead


def _listened_on(path: Path) -> bool:
    """Does a process accept connections on this unix socket (else it is a stale file)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def dead_mounts(top: Path) -> list[str]:
    """Mount points at or below `top` whose filesystem no longer answers (see walk)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        if point == str(top) or point.startswith(str(top) + "/"):
            try:
                os.stat(point)
            except OSError as e:
                if e.errno == errno.ENOTCONN:
                    found.append(point)
    return found


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # the process just went, or is a kernel thread
        return ""


def _uids(pid: int) -> set[int]:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            return {int(u) for u in line.split()[1:]}
    return set()


def _cgroups(pid: int) -> list[str]:
    """The cgroup paths of a process, one per hierarchy ("/sandlot-abc/i123")."""
    return [line.split(":", 2)[2] for line in _read(f"/proc/{pid}/cgroup").splitlines() if line.count(":") >= 2]


def _net_namespaces(pid: int) -> set[int]:
    """Network namespaces a process keeps alive: its own, and any it holds an fd of."""
    found = set()
    links = [f"/proc/{pid}/ns/net"]
    try:
        links += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        pass
    for link in links:
        try:
            m = _NS.match(os.readlink(link))
        except OSError:
            continue
        if m:
            found.add(int(m.group(1)))
    return found


def all_net_namespaces() -> set[int]:
    return set().union(*(_net_namespaces(pid) for pid in _pids()))


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, ..."""
    return _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()


def _parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def _orphan_zombie(pid: int) -> bool:
    # A zombie holds nothing but its pid; once init inherited it (its server died), reaping it is
    # init's business. A zombie of a live server is a leak and is counted.
    fields = _stat(pid)
    return len(fields) > 1 and fields[0] == "Z" and fields[1] == "1"


class Footprint:
    """The host resources of the server with state directory `home`.

    A process is the server's if it sits in the server's cgroup group, or runs under a host uid of a
    slot the server used (UID_FIRST + slot * UID_RANGE ...) and sits in no other server's group. Slots
    are learnt from state.json files and cgroup membership while sandboxes live (`note_slots`); the
    server's claims on them (/run/sandlot/uids) count as resources too.
    """

    def __init__(self, home: Path, slots: set[int] | None = None):
        self.home = home.resolve()
        self.mnt = mount_root(home)
        self.group = "sandlot-" + self.mnt.name
        self.slots = set(slots or ())
        self.netns_before = all_net_namespaces()

    def note_slots(self) -> set[int]:
        for state in (self.home / "sandboxes").glob("*/state.json"):
            try:
                self.slots.add(json.loads(state.read_text())["slot"])
            except (OSError, ValueError, KeyError):
                pass  # being written or removed right now
        for pid in _pids():
            if self._in_group(pid):
                self.slots.update((u - UID_FIRST) // UID_RANGE for u in _uids(pid) if u >= UID_FIRST)
        return self.slots

    def _in_group(self, pid: int, spares: bool = False) -> bool:
        for path in _cgroups(pid):
            parts = path.strip("/").split("/")
            if parts[0] == self.group and len(parts) > 1 and (spares or not parts[1].startswith("spare-")):
                return True
        return False

    def _in_other_group(self, pid: int) -> bool:
        return any(p.strip("/").split("/")[0].startswith("sandlot-") and p.strip("/").split("/")[0] != self.group
                   for p in _cgroups(pid))

    def _has_our_uid(self, pid: int) -> bool:
        return any(u >= UID_FIRST and (u - UID_FIRST) // UID_RANGE in self.slots for u in _uids(pid))

    def owns(self, pid: int) -> bool:
        if _orphan_zombie(pid):
            return False
        return self._in_group(pid) or (self._has_our_uid(pid) and not self._in_other_group(pid))

    def processes(self) -> list[str]:
        return [f"{pid} {_read(f'/proc/{pid}/comm').strip()} uids={sorted(_uids(pid))}"
                for pid in _pids() if self.owns(pid)]

    def new_net_namespaces(self, server_pid: int | None = None) -> list[str]:
        """Network namespaces made since this footprint was taken that the server's processes (or
        the server itself and its children) keep alive."""
        found = []
        for pid in _pids():
            if self._in_group(pid, spares=True) and not self._in_group(pid):
                continue  # a stem makes its sandbox's namespace ahead of time: counted with the stems
            if self.owns(pid) or (server_pid and self._descends_from(pid, server_pid)):
                found += [f"net:[{ns}] held by {pid}" for ns in _net_namespaces(pid) - self.netns_before]
        return found

    @staticmethod
    def _descends_from(pid: int, ancestor: int) -> bool:
        for _ in range(64):
            if pid == ancestor:
                return True
            if pid <= 1:
                return False
            pid = _parent(pid)
        return False

    def resources(self, server_pid: int | None = None) -> dict[str, list[str]]:
        """Everything this server's sandboxes could leave behind (stems: the running server's
        processes forked ahead for creates, kept apart because a live server owns them)."""
        home, mnt = str(self.home), str(self.mnt)
        self.note_slots()
        # the server's own: its code/ (the in-sandbox tree and bwrap's copy), .home (its state dir,
        # for other servers' mount namespaces: runtimes/mount_ns.py), the permission filesystem's (below)
        # and .sources (the binds its sandboxes' lowers are cloned from: runtimes/sources.py; a stopped
        # server leaves none, or its run dir would stay: the tests that stop one check that it goes)
        code, own = mnt + "/code", (".sources",)
        mounts = [point for point in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                                      if home in line or mnt in line)
                  if point != code and not any(point.startswith(f"{mnt}/{name}/") for name in own)]
        dirs = [str(p) for p in (self.home / "sandboxes").glob("*")]
        dirs += [str(p) for p in self.mnt.glob("*")
                 if not p.name.startswith(("agent-", "bwrap-", ".permfs", "code", ".home", *own))]
        groups = list(CGROUP_ROOT.glob(f"*/{self.group}/*")) + list(CGROUP_ROOT.glob(f"{self.group}/*"))
        cgroups = [str(p) for p in groups if p.is_dir() and not p.name.startswith("spare-")]
        stems = [str(p) for p in groups if p.is_dir() and p.name.startswith("spare-")]
        stems += [f"process {pid}" for pid in _pids() if self._in_group(pid, spares=True) and not self._in_group(pid)]
        claims = [f"uid slot {slot}" for slot in UidRanges(self.mnt).mine()]
        # the permission filesystem: its daemon (host root, in no sandbox's cgroup), its mount
        # point and sockets, a mount its daemon left dead
        permfs = [f"daemon {pid}" for pid in permfs_daemons(self.mnt)]
        permfs += [str(p) for p in self.mnt.glob(".permfs*")
                   if not (p.name == ".permfs-denials.sock" and _listened_on(p))]  # a running server's
        permfs += [f"{point} (dead mount: its daemon is gone)" for point in dead_mounts(self.mnt)]
        # layers (snapshots, fork, filesystem pauses): a layer or an unfinished commit nobody holds
        layers = [str(p) for p in (self.home / "layers").glob("*")
                  if len(p.name) == 64 or p.name.startswith(".new-")]
        return {"processes": self.processes(), "netns": self.new_net_namespaces(server_pid), "mounts": mounts,
                "dirs": dirs, "cgroups": cgroups, "stems": stems, "uid claims": claims, "permfs": permfs,
                "layers": layers, "links": self.links(), "nft": self.nft(table_too=server_pid is None)}

    # ---- network (issue 12) ------------------------------------------------------------------

    def _slots(self) -> dict[int, str]:
        by_slot = {}
        for state in (self.home / "sandboxes").glob("*/state.json"):
            try:
                by_slot[json.loads(state.read_text())["slot"]] = state.parent.name
            except (OSError, ValueError, KeyError):
                pass
        return by_slot

    def _owner(self, link: str, by_slot: dict[int, str]) -> str:
        slot = link.rsplit("-", 1)[-1]
        return by_slot.get(int(slot), "?") if slot.isdigit() else "?"

    def links(self) -> list[str]:
        """The server's veths on the host (`sl<server>-<slot>`), named with their sandbox's id."""
        prefix, by_slot = "sl" + self.mnt.name[:6] + "-", self._slots()
        return [f"link {name} of {self._owner(name, by_slot)}"
                for name in sorted(os.listdir("/sys/class/net")) if name.startswith(prefix)]

    def nft(self, table_too: bool) -> list[str]:
        """What the server's nftables table holds for sandboxes (set and map elements by link, cap
        chains), named with their sandbox's id; the table itself too once the server has stopped
        (a running server keeps it, empty of sandboxes)."""
        table = "sandlot_" + self.mnt.name
        if not shutil.which("nft"):
            return []
        done = subprocess.run(["nft", "-j", "list", "table", "inet", table], capture_output=True, text=True)
        if done.returncode != 0:
            return []
        by_slot, found = self._slots(), set()
        for item in json.loads(done.stdout)["nftables"]:
            s = item.get("set") or item.get("map")
            if s and s["name"] != "blocked":
                for elem in s.get("elem", []):
                    link = re.search(r'"(sl[0-9a-f]{6}-\d+)"', json.dumps(elem))
                    if link:
                        found.add(f"nft {s['name']} element of {link.group(1)} of {self._owner(link.group(1), by_slot)}")
            if "chain" in item and item["chain"]["name"].startswith("cap_"):
                found.add(f"nft chain {item['chain']['name']}")
        return sorted(found) + ([f"nft table {table}"] if table_too else [])

    def group_dirs(self) -> list[Path]:
        return [p for p in [*CGROUP_ROOT.glob(f"*/{self.group}"), CGROUP_ROOT / self.group] if p.is_dir()]


def permfs_daemons(mnt: Path) -> list[int]:
    """Pids of the permission filesystem daemons mounted at `mnt`/.permfs (one per server)."""
    mount = str(mnt / ".permfs").encode()
    found = []
    for pid in _pids():
        args = _cmdline(pid).split(b"\0")
        if mount in args and any(b"permfs.daemon" in a for a in args):
            found.append(pid)
    return found


def pid_namespace(pid: int) -> str:
    """The pid namespace of a process ("pid:[4026532...]"), the same name inside and outside it."""
    return os.readlink(f"/proc/{pid}/ns/pid")


def pid_namespace_members(ns: str) -> list[int]:
    found = []
    for pid in _pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                found.append(pid)
        except OSError:  # gone meanwhile
            pass
    return found


def sandbox_traces(sandbox_id: str, home: Path, pid_ns: str | None = None) -> dict[str, list[str]]:
    """What one sandbox still holds on the host, whichever runtime made it: processes (of its pid
    namespace, or naming its id on their command line), mounts, directories and cgroups named by its
    id, uid claims. Only kinds with something left are in the answer, so a clean sandbox gives {}.
    The caller keeps `pid_ns` open (the kernel reuses the names of namespaces that are gone)."""
    found: dict[str, list[str]] = {}
    members = pid_namespace_members(pid_ns) if pid_ns else []
    members += [pid for pid in _pids() if sandbox_id.encode() in _cmdline(pid)]
    found["processes"] = [f"{pid} {_read(f'/proc/{pid}/comm').strip()} (state, ppid: {' '.join(_stat(pid)[:2])})"
                          for pid in sorted(set(members)) if not _orphan_zombie(pid)]
    found["mounts"] = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                       if sandbox_id in line.split()[4].split("/")]
    places = [home.resolve(), *(p for p in Path("/run/sandlot").glob("*") if p.is_dir())]
    walks = [walk(place, 3) for place in places]
    found["dirs"] = [str(p) for entries, _ in walks for p in entries if p.name == sandbox_id]
    found["dead mounts"] = [point for _, dead in walks for point in dead]
    groups = [*CGROUP_ROOT.glob(f"*/*/{sandbox_id}"), *CGROUP_ROOT.glob(f"*/{sandbox_id}")]
    found["cgroups"] = [str(p) for p in groups if p.is_dir()]
    found["uid claims"] = [str(p) for p in CLAIMS.glob("[0-9]*") if sandbox_id in _read(str(p)).split()]
    found["loop devices"] = _loop_devices(sandbox_id)
    return {kind: items for kind, items in found.items() if items}


def _loop_devices(sandbox_id: str) -> list[str]:
    """Loop devices backed by the sandbox's disk (runtimes/disk.py). The kernel frees one after
    its filesystem's last unmount, in a work queue: a moment after kill() it may still show, its
    image deleted; such a one gets 10 s to go (the work queue waits its turn on a loaded host; one
    that is never freed still shows)."""
    deadline = time.monotonic() + 10
    while True:
        found = [f"{p.parent.parent.name} {_read(str(p)).strip()}"
                 for p in Path("/sys/block").glob("loop*/loop/backing_file")
                 if sandbox_id in _read(str(p)).split("/")]
        if not found or time.monotonic() > deadline or not all(f.endswith("(deleted)") for f in found):
            return found
        time.sleep(0.05)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
