"""Code interpreter benchmark; writes its section of docs/benchmarks.md.

    sudo .venv/bin/python benchmarks/interpreter.py [--runs 50]

Against a real `sandlot serve` (one with a warm pool of `code-interpreter` sandboxes, one without),
driven by the official `e2b-code-interpreter` SDK, sandlot's own SDK and plain HTTP: `1+1` round
trips on a warm context, the first `run_code` of a fresh sandbox (create -> first result, cold and
from the pool), and the memory of an idle python context. The floor, in the same run: the same
`1+1` through jupyter_client straight to an ipykernel on the host (no sandbox, no HTTP), and that
kernel's start -> first result. Not a test: numbers, machine, method.
"""

from __future__ import annotations

import argparse
import json
import os
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

TEMPLATE = "code-interpreter"
# Run by the template's own python (it has jupyter_client), outside any sandbox: the floor.
FLOOR = """
import json, sys, time
from jupyter_client.manager import start_new_kernel
runs = int(sys.argv[1])
t = time.perf_counter()
km, kc = start_new_kernel(kernel_name="python3")
kc.execute_interactive("1+1", timeout=30)
start = time.perf_counter() - t
samples = []
for _ in range(runs):
    t = time.perf_counter()
    kc.execute_interactive("1+1", timeout=30)
    samples.append(time.perf_counter() - t)
kc.stop_channels()
km.shutdown_kernel(now=True)
print()
print("FLOOR=" + json.dumps({"start": start, "samples": samples}), flush=True)
"""


def floor(rootfs: Path, runs: int) -> dict:
    """jupyter_client -> ipykernel with the template's python, chrooted, no sandbox around it."""
    # a private tmpfs over the template's /tmp (in a mount namespace of its own): the kernel's files
    # must not land in the template
    script = 'mount -t tmpfs tmpfs "$1/tmp" && exec chroot --userspec=1000:1000 "$1" env HOME=/tmp python3 -c "$2" "$3"'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(rootfs),
                           FLOOR, str(runs)], capture_output=True, text=True, check=True, cwd="/")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("FLOOR="))  # the kernel shares stdout
    return json.loads(line[len("FLOOR="):])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    runs = args.runs
    from e2b_code_interpreter import Sandbox

    import sandlot

    rows, notes, verdicts = [], [], []
    home = Path(tempfile.mkdtemp(prefix="sandlot-bench-"))
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
                warm = timed(lambda: sbx.run_code("1+1"), runs * 4)
                rows.append(row("`1+1` round trip, warm context (e2b-code-interpreter SDK)", warm))
                verdicts.append(verdict("`1+1` on a warm context (e2b-code-interpreter SDK), p50", p50_ms(warm), 5))
                native = sandlot.Sandbox.connect(sbx.sandbox_id, api_url=srv.url, api_key=srv.api_key)
                rows.append(row("`1+1` round trip, warm context (sandlot SDK)",
                                timed(lambda: native.run_code("1+1"), runs * 4)))
                http = httpx.Client(base_url=srv.url)
                headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token}

                def raw() -> None:
                    with http.stream("POST", "/execute", json={"code": "1+1"}, headers=headers) as r:
                        for _ in r.iter_lines():
                            pass

                rows.append(row("`1+1` round trip, warm context (HTTP keep-alive, no SDK)", timed(raw, runs * 4)))
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

        from support import TEMPLATE_CACHE

        base = floor(TEMPLATE_CACHE / TEMPLATE / "rootfs", runs * 4)
        rows.append(row("floor: `1+1` via jupyter_client -> ipykernel, no sandbox, no HTTP", base["samples"]))
        notes.append(f"floor: a fresh ipykernel's start -> first `1+1` result (jupyter_client, no sandbox): "
                     f"{base['start'] * 1000:.0f} ms (one run).")
        notes.append(f"Run-to-run spread of the e2b SDK warm-context round trip above: see p99; mean of the "
                     f"floor {statistics.mean(base['samples']) * 1000:.2f} ms.")
    finally:
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
        "context is up, with a pause between creates so the pool refills. Wall-clock per operation.",
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
    print(Path(REPO / "docs" / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
