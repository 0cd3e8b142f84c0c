"""Sampling profiles of a benchmark's processes with py-spy, summed up as the frames that take the
most of the samples (self time by function and by area of the code, and time under each function).

py-spy samples the process from outside (no change to it) with --gil: only the thread holding the
GIL is kept, so shares are shares of the time the process ran Python (with what its C calls and
syscalls took while holding the GIL); waits in epoll or sleep, and runnable threads waiting for a
core on a loaded machine, are left out. py-spy itself takes CPU (a third of the machine with a busy
server): CPU figures of a profiled run are not the unprofiled ones.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# area of the code a frame's file belongs to, first match wins (the server's and the SDK's stacks)
AREAS = [
    ("sandlot/server/envd", "sandlot envd front door"),
    ("sandlot/server/agent_client", "sandlot agent client"),
    ("sandlot/server/journal", "sandlot journal"),
    ("sandlot/server/observe", "sandlot access log + metrics"),
    ("sandlot/server/metrics", "sandlot access log + metrics"),
    ("sandlot/server/service", "sandlot lifecycle service"),
    ("sandlot/server/store", "SQLite store"),
    ("sandlot/runtimes", "sandlot runtime (create/kill)"),
    ("sandlot/hostfs", "sandlot runtime (create/kill)"),
    ("sandlot/server", "sandlot server (other)"),
    ("sandlot/", "sandlot (other)"),
    ("connectrpc", "Connect RPC"),
    ("google/protobuf", "protobuf"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn + h11/httptools"),
    ("h11", "uvicorn + h11/httptools"),
    ("httptools", "uvicorn + h11/httptools"),
    ("httpcore", "httpx/httpcore (client)"),
    ("httpx", "httpx/httpcore (client)"),
    ("pyqwest", "pyqwest (client transport)"),
    ("e2b", "e2b SDK"),
    ("pydantic", "pydantic"),
    ("prometheus_client", "sandlot access log + metrics"),
    ("logging", "logging"),
    ("asyncio", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("concurrent/futures", "threads (to_thread)"),
    ("threading", "threads (to_thread)"),
    ("json", "json"),
]


def area(frame: str) -> str:
    path = frame[frame.find("(") + 1:] if "(" in frame else frame
    for prefix, name in AREAS:
        if prefix in path:
            return name
    return "other"


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file path from the package root)`, line dropped."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


@dataclass
class Profile:
    samples: int
    self_by_frame: Counter[str]
    under_frame: Counter[str]  # samples with the frame anywhere on the stack
    self_by_area: Counter[str]

    def top(self, counter: Counter[str], n: int, skip_above: float = 1.0) -> list[tuple[str, float]]:
        """The `n` largest shares (0..1), leaving out frames on more than `skip_above` of the stacks
        (the event loop's outer frames, on every stack)."""
        rows = [(k, v / self.samples) for k, v in counter.most_common() if v / self.samples <= skip_above]
        return rows[:n]


def parse(raw: str) -> Profile:
    """py-spy's raw (collapsed) output: `frame;frame;...;leaf count` per line."""
    total, own, under, areas = 0, Counter(), Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        areas[area(stack.split(";")[-1])] += n
        for frame in set(frames):
            under[frame] += n
    return Profile(max(total, 1), own, under, areas)


class PySpy:
    """`py-spy record` on one process while a block runs: `with PySpy(pid, path) as spy: ...`,
    then `spy.profile()`."""

    def __init__(self, pid: int, out: Path, rate: int = 200):
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return _py_spy() is not None

    def __enter__(self) -> PySpy:
        self.proc = subprocess.Popen(
            [_py_spy(), "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.out),
             "--rate", str(self.rate), "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def profile(self) -> Profile | None:
        try:
            return parse(self.out.read_text())
        except OSError:
            return None


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def summary(title: str, prof: Profile, cpu_ms_per_op: float | None, n: int = 8) -> list[str]:
    """Markdown lines: self time by area, the top functions by self time and by time under them.
    With the process's CPU per operation, shares are also given as ms per operation."""
    def fmt(share: float) -> str:
        return f"{share * 100:.0f}%" + (f" ({share * cpu_ms_per_op:.2f} ms/op)" if cpu_ms_per_op else "")

    lines = [f"{title} ({prof.samples} samples):", ""]
    lines.append("- by area (self time): " + "; ".join(
        f"{name} {fmt(share)}" for name, share in prof.top(prof.self_by_area, n)))
    lines.append("- top functions (self time): " + "; ".join(
        f"`{name}` {fmt(share)}" for name, share in prof.top(prof.self_by_frame, n)))
    lines.append("- time under (inclusive, frames on < 90% of stacks): " + "; ".join(
        f"`{name}` {fmt(share)}" for name, share in prof.top(prof.under_frame, n, skip_above=0.9)))
    return lines


class Perf:
    """`perf record -a -g` of the whole machine while a block runs (kernel time included: forks,
    mounts, cgroup moves, page faults); `summary()` gives its top commands and symbols. Other work
    on the machine is in it too."""

    def __init__(self, out: Path, frequency: int = 499):
        self.out, self.frequency = out, frequency
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("perf") is not None

    def __enter__(self) -> Perf:
        self.proc = subprocess.Popen(["perf", "record", "-F", str(self.frequency), "-a", "-g", "-o", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)

    def summary(self, title: str, n: int = 12) -> list[str]:
        def report(*sort: str) -> list[str]:
            out = subprocess.run(["perf", "report", "-i", str(self.out), "--stdio", "--no-children", "-g", "none",
                                  "--percent-limit", "0.5", "--sort", ",".join(sort)],
                                 capture_output=True, text=True).stdout
            return [" ".join(line.split()) for line in out.splitlines() if line.strip() and not line.startswith("#")][:n]

        return [f"{title} (perf, whole machine, other work included):", "",
                "- by command: " + "; ".join(report("comm")),
                "- by command and symbol: " + "; ".join(f"`{x}`" for x in report("comm", "sym"))]
