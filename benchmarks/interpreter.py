"""Code interpreter benchmark; writes its sections of docs/benchmarks.md.

    sudo .venv/bin/python benchmarks/interpreter.py [--runs 50] [--languages]

Against a real `sandlot serve` (one with a warm pool of `code-interpreter` sandboxes, one without),
driven by the official `e2b-code-interpreter` SDK, sandlot's own SDK and plain HTTP: `1+1` round
trips on a warm context, the first `run_code` of a fresh sandbox (create -> first result, cold and
from the pool), and the memory of an idle python context. The floor, in the same run: the same
`1+1` through jupyter_client straight to a stock ipykernel on the host (no sandbox, no HTTP), and
that kernel's start -> first result. The warm round trips and the floor are taken in alternating
blocks, so that a slow spell of the machine (seen here: 30% for minutes) falls on all of them alike.
Then R and java contexts (their own section; `--languages`: only them): create -> first `run_code`
cold and from the pool (which starts only the python context, as E2B's), warm round trips, and the
memory of an idle context.
Not a test: numbers, machine, method.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import TEMPLATE_CACHE, start_server  # noqa: E402

from report import machine, p50_ms, pss_of_pids, row, sandbox_pids, timed, verdict, write_section  # noqa: E402

TEMPLATE = "code-interpreter"
# Run by the template's own python (it has jupyter_client), outside any sandbox: the floor. It
# starts a stock kernel, then runs as many `1+1` as each line on its stdin asks, answering with
# their times; an empty line ends it.
FLOOR = """
import json, sys, time
from jupyter_client.manager import start_new_kernel
t = time.perf_counter()
km, kc = start_new_kernel(kernel_name="python3")
kc.execute_interactive("1+1", timeout=30)
print("FLOOR=" + json.dumps(time.perf_counter() - t), flush=True)
for line in sys.stdin:
    if not line.strip():
        break
    samples = []
    for _ in range(int(line)):
        t = time.perf_counter()
        kc.execute_interactive("1+1", timeout=30)
        samples.append(time.perf_counter() - t)
    print("FLOOR=" + json.dumps(samples), flush=True)
kc.stop_channels()
km.shutdown_kernel(now=True)
"""


class Floor:
    """jupyter_client -> ipykernel with the template's python, chrooted, no sandbox around it."""

    def __init__(self, rootfs: Path):
        # a private tmpfs over the template's /tmp (in a mount namespace of its own): the kernel's
        # files must not land in the template
        script = ('mount -t tmpfs tmpfs "$1/tmp" && exec chroot --userspec=1000:1000 "$1" '
                  'env HOME=/tmp python3 -c "$2"')
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                                      str(rootfs), FLOOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd="/")
        self.start = self._answer()

    def _answer(self):
        for line in self.proc.stdout:  # execute_interactive prints each `2`, without a newline
            if "FLOOR=" in line:
                return json.loads(line.split("FLOOR=", 1)[1])
        raise RuntimeError("the floor's kernel stopped")

    def run(self, n: int) -> list[float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(30)


# language -> (code, the text of its first result, a pattern of its kernel's command line)
LANGUAGES = {"r": ("1+1", "[1] 2", "IRkernel"), "java": ("1+1", "2", "JavaRunner")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--languages", action="store_true", help="only the R and java contexts")
    args = ap.parse_args()
    if not args.languages:
        python_section(args.runs)
    languages_section(args.runs)
    print(Path(REPO / "docs" / "benchmarks.md").read_text())


def python_section(runs: int) -> None:
    from e2b_code_interpreter import Sandbox

    import sandlot

    rows, notes, verdicts = [], [], []
    home = Path(tempfile.mkdtemp(prefix="sandlot-bench-"))
    base = Floor(TEMPLATE_CACHE / TEMPLATE / "rootfs")  # its start measured while nothing else runs
    try:
        for pool, label in ((0, "cold"), (2, "warm pool")):
            srv = start_server(home / label.replace(" ", "-"), pool_size=pool,
                               extra_env={"SANDLOT_POOL_TEMPLATES": TEMPLATE})
            os.environ.update(srv.env())
            kills = []

            def first_run() -> None:
                sbx = Sandbox.create(timeout=120)
                assert sbx.run_code("1+1").text == "2"
                kills.append(sbx)

            time.sleep(3 if pool else 0)  # the pool's kernels start
            samples = []
            for _ in range(max(10, runs // 3) if not pool else runs):
                if pool:
                    time.sleep(1.5)  # a pooled sandbox's kernel takes ~0.6 s to start: let it refill
                t = time.perf_counter()
                first_run()
                samples.append(time.perf_counter() - t)
                kills.pop().kill()
            rows.append(row(f"create -> first `run_code(\"1+1\")` ({label}, e2b SDK)", samples))
            verdicts.append(verdict(f"first `run_code` on a fresh sandbox, {label}, p50", p50_ms(samples),
                                    50 if pool else 800))

            if pool:
                sbx = Sandbox.create(timeout=300)
                sbx.run_code("1+1")
                native = sandlot.Sandbox.connect(sbx.sandbox_id, api_url=srv.url, api_key=srv.api_key)
                http = httpx.Client(base_url=srv.url)
                headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token}

                def raw() -> None:
                    with http.stream("POST", "/execute", json={"code": "1+1"}, headers=headers) as r:
                        for _ in r.iter_lines():
                            pass

                ways = {"e2b": lambda: sbx.run_code("1+1"), "sandlot": lambda: native.run_code("1+1"), "raw": raw}
                warm: dict[str, list[float]] = {name: [] for name in (*ways, "floor")}
                for _ in range(runs // 5):  # blocks of 20, in turn
                    for name, fn in ways.items():
                        warm[name] += timed(fn, 20)
                    warm["floor"] += base.run(20)
                rows.append(row("`1+1` round trip, warm context (e2b-code-interpreter SDK)", warm["e2b"]))
                verdicts.append(verdict("`1+1` on a warm context (e2b-code-interpreter SDK), p50",
                                        p50_ms(warm["e2b"]), 5))
                rows.append(row("`1+1` round trip, warm context (sandlot SDK)", warm["sandlot"]))
                rows.append(row("`1+1` round trip, warm context (HTTP keep-alive, no SDK)", warm["raw"]))
                rows.append(row("floor: `1+1` via jupyter_client -> stock ipykernel, no sandbox, no HTTP",
                                warm["floor"]))
                http.close()
                time.sleep(1)
                pss = pss_of_pids(sandbox_pids(sbx.sandbox_id))
                kernel = sbx.commands.run("pgrep -f ipykernel_launcher").stdout.split()
                procs = [p for p in sandbox_pids(sbx.sandbox_id)
                         if "ipykernel_launcher" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
                kernel_pss = pss_of_pids(procs)
                notes.append(f"Idle `code-interpreter` sandbox with its default python context: PSS of all its "
                             f"processes {pss / 2**20:.1f} MiB, of which the python kernel "
                             f"{kernel_pss / 2**20:.1f} MiB ({len(kernel)} kernel process).")
                contexts = [sbx.create_code_context() for _ in range(3)]
                for c in contexts:
                    sbx.run_code("1+1", context=c)
                time.sleep(1)
                extra = (pss_of_pids(sandbox_pids(sbx.sandbox_id)) - pss) / len(contexts)
                notes.append(f"Each further idle python context: +{extra / 2**20:.1f} MiB PSS (mean of "
                             f"{len(contexts)}).")
                sbx.kill()
            srv.stop()

        notes.append(f"floor: a fresh ipykernel's start -> first `1+1` result (jupyter_client, no sandbox): "
                     f"{base.start * 1000:.0f} ms (one run, before anything else).")
    finally:
        base.close()
        subprocess.run(["rm", "-rf", str(home)], check=False)

    write_section("interpreter", "\n".join([
        "## Code interpreter (`benchmarks/interpreter.py`)",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/interpreter.py --runs {runs}` on: "
        f"{machine()}.",
        "",
        "Method: a real `sandlot serve` on loopback (namespace runtime, `code-interpreter` template), driven by",
        "the official `e2b-code-interpreter` SDK, sandlot's SDK and plain HTTP. \"cold\" = no warm pool (the",
        "sandbox and its kernel start on create); \"warm pool\" = 2 pre-started sandboxes whose default python",
        "context is up, with a pause between creates so the pool refills. Wall-clock per operation; the",
        "warm round trips and the floor in alternating blocks of 20. sandlot's kernels are tuned (no busy",
        "status, no execute_input, no 0.5 ms sleep per run: kernels/startup.py), the floor's is stock.",
        "",
        "| operation | p50 ms | p99 ms | runs |",
        "|---|---|---|---|",
        *rows,
        "",
        *[f"- {n}" for n in notes],
        "",
        "Targets (issue 3):",
        "",
        *[f"- {v}" for v in verdicts],
    ]))


def languages_section(runs: int) -> None:
    from e2b_code_interpreter import Sandbox

    runs = max(3, runs // 5)
    rows, notes = [], []
    load = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="sandlot-bench-"))
    try:
        for pool, label in ((0, "cold"), (2, "warm pool")):
            srv = start_server(home / label.replace(" ", "-"), pool_size=pool,
                               extra_env={"SANDLOT_POOL_TEMPLATES": TEMPLATE})
            os.environ.update(srv.env())
            time.sleep(3 if pool else 0)  # the pool's kernels start
            for language, (code, expected, _) in LANGUAGES.items():
                samples = []
                for _ in range(runs):
                    if pool:
                        time.sleep(1.5)  # the pool refills
                    t = time.perf_counter()
                    sbx = Sandbox.create(timeout=120)
                    execution = sbx.run_code(code, language=language, timeout=120)
                    samples.append(time.perf_counter() - t)
                    assert execution.error is None and execution.results[0].text == expected, execution
                    sbx.kill()
                rows.append(row(f"create -> first `run_code(\"{code}\", language=\"{language}\")` ({label})", samples))
            if pool:
                sbx = Sandbox.create(timeout=300)
                for language, (code, expected, pattern) in LANGUAGES.items():
                    context = sbx.create_code_context(language=language, request_timeout=120)
                    sbx.run_code(code, context=context)
                    rows.append(row(f"`{code}` round trip, warm {language} context",
                                    timed(lambda: sbx.run_code(code, context=context), max(20, runs * 4))))
                    time.sleep(1)
                    procs = [p for p in sandbox_pids(sbx.sandbox_id)
                             if pattern in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
                    notes.append(f"An idle {language} context: {pss_of_pids(procs) / 2**20:.1f} MiB PSS "
                                 f"({len(procs)} process).")
                sbx.kill()
            srv.stop()
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)
    template = TEMPLATE_CACHE / TEMPLATE
    manifest = json.loads((template / "manifest.json").read_text())
    size = subprocess.run(["du", "-sm", str(template / "rootfs")], capture_output=True, text=True).stdout.split()[0]
    notes.append(f"The `{TEMPLATE}` template this ran on: {size} MiB on disk, built in "
                 f"{manifest['build_seconds']:.0f} s.")
    write_section("interpreter-languages", "\n".join([
        "### R and java contexts (`benchmarks/interpreter.py --languages`)",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/interpreter.py --languages --runs "
        f"{runs * 5}` on: {machine()}; load average {load:.1f} at its start, {os.getloadavg()[0]:.1f} at its end",
        "(other work on the machine shares its cores: read the numbers as an upper bound).",
        "",
        "Method: as above. R is IRkernel (a Jupyter kernel), java a JShell in sandlot's runner",
        "(kernels/JavaRunner.java, one JVM per context). The pool starts only each sandbox's python context,",
        "as E2B's does: an R or java context starts on its first use, so \"warm pool\" saves the sandbox's",
        "start, not the kernel's.",
        "",
        "| operation | p50 ms | p99 ms | runs |",
        "|---|---|---|---|",
        *rows,
        "",
        *[f"- {n}" for n in notes],
    ]))


if __name__ == "__main__":
    main()
