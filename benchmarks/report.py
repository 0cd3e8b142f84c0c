"""What the benchmark scripts share: percentiles, timing, machine facts, and docs/benchmarks.md, in
which each script owns one section (between `<!-- begin NAME -->` and `<!-- end NAME -->`)."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; re-run a script to refresh its section.\n"


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def row(name: str, samples_s: list[float]) -> str:
    ms = [x * 1000 for x in samples_s]
    return f"| {name} | {pct(ms, 50):.2f} | {pct(ms, 99):.2f} | {len(ms)} |"


def p50_ms(samples_s: list[float]) -> float:
    return pct([x * 1000 for x in samples_s], 50)


def verdict(what: str, value: float, target: float, unit: str = "ms", at_least: bool = False) -> str:
    """One line saying whether a measured p50 (or other value) meets its target (a ceiling, or a
    floor with `at_least`)."""
    met = "met" if (value >= target if at_least else value <= target) else "**missed**"
    return f"{what}: {value:.2f} {unit} against {'>=' if at_least else '<='} {target:g} {unit}: {met}."


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pss_of_pids(pids) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def sandbox_pids(sandbox_id: str) -> list[str]:
    procs = next(Path("/sys/fs/cgroup").glob(f"pids/sandlot-*/{sandbox_id}/cgroup.procs"), None) or \
        next(Path("/sys/fs/cgroup").glob(f"sandlot-*/{sandbox_id}/cgroup.procs"))
    return procs.read_text().split()


def machine() -> str:
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def write_section(name: str, text: str) -> None:
    """Replace this script's section of docs/benchmarks.md (appended if it has none yet)."""
    OUT.parent.mkdir(exist_ok=True)
    doc = OUT.read_text() if OUT.exists() else HEADER
    block = f"<!-- begin {name} -->\n{text.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    doc = pattern.sub(lambda _: block, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + block + "\n"
    OUT.write_text(doc)
