"""Snapshots, fork and layers benchmark; writes its section of docs/benchmarks.md.

    sudo .venv/bin/python benchmarks/snapshots.py [--runs 10]

Measures, against a real `sandlot serve` started here, through the official `e2b` SDK: a snapshot
of a sandbox with 100 MB written (the commit: freeze, copy and hash, thaw), create from a snapshot
-> first `echo` (cold; warm from the snapshot's own pool), fork -> first `echo` in the child;
and, on the host, the cost of a stack's depth (why layers/store.py merges past MAX_STACK):
`stat` of 2,000 template files through an overlay of N layers, and the merge itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
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

from report import machine, p50_ms, row, timed, verdict, write_section  # noqa: E402


def depth_cost(template: Path, work: Path, depths=(1, 4, 16, 64)) -> list[str]:
    """stat() of 2,000 of the template's files through an overlay of N empty-ish layers."""
    from sandlot.layers.store import LayerStore

    files = [p for p in template.rglob("*") if p.is_file() and not p.is_symlink()][:2000]
    rel = [p.relative_to(template) for p in files]
    store = LayerStore(work / "home")
    layers = []
    for i in range(max(depths)):
        d = work / f"src{i}"
        (d / "opt" / f"layer{i}").mkdir(parents=True)
        (d / "opt" / f"layer{i}" / "f").write_text(str(i))
        layers.append(store.commit(d, "bench"))
    short = work / "l"  # overlay's options fit in a page: short names for 64 layers
    short.mkdir()
    for i, d in enumerate(layers):
        (short / str(i)).symlink_to(store.path(d))
    lines = []
    for n in depths:
        lower = ":".join([str(short / str(i)) for i in reversed(range(n))] + [str(template)])
        samples = []
        for run in range(5):  # a fresh overlay each time: its own dentry cache is empty, ext4's warm
            point = work / f"view{n}-{run}"
            point.mkdir()
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(point)],
                           check=True)
            try:
                t = time.perf_counter()
                for r in rel:
                    os.stat(point / r)
                samples.append(time.perf_counter() - t)
            finally:
                subprocess.run(["umount", str(point)], check=True)
        lines.append(f"| first stat() of {len(rel)} template files through {n} layer(s) | "
                     f"{p50_ms(samples):.1f} | {min(samples) * 1000:.1f} | 5 |")
    t = time.perf_counter()
    merged = store.stack(layers[:17], "bench-merge")
    lines.append(f"| merge of {17 - 15} layers when a stack reaches 17 (MAX_STACK 16) | "
                 f"{(time.perf_counter() - t) * 1000:.1f} | - | 1 |")
    assert len(merged) == 16
    store.release("bench")
    store.release("bench-merge")
    store.gc()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    runs = args.runs
    from e2b import Sandbox

    m: dict[str, list[float]] = {}
    notes = []
    home = Path(tempfile.mkdtemp(prefix="sandlot-bench-"))
    try:
        srv = start_server(home / "server", pool_size=2, extra_env={"SANDLOT_POOL_TEMPLATES": ""})
        os.environ.update(srv.env())
        api = httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=300)
        try:
            src = Sandbox.create(timeout=900)
            src.commands.run("head -c 100000000 /dev/urandom > /home/user/data.bin", timeout=120)
            snaps = []

            def snapshot():
                r = api.post(f"/sandboxes/{src.sandbox_id}/snapshots", json={})
                snaps.append(r.json()["snapshotID"])

            m["snapshot of a sandbox with 100 MB written"] = timed(snapshot, max(3, runs // 3))
            for s in snaps[1:]:
                api.delete(f"/templates/{s}")
            snap = snaps[0]

            made = []

            def first_echo(template: str):
                sbx = Sandbox.create(template, timeout=120)
                assert sbx.commands.run("echo hi").stdout == "hi\n"
                made.append(sbx)

            # the same from the template, alternating, so both see the same load
            base, cold = [], []
            for _ in range(runs):
                base += timed(lambda: first_echo("base"), 1)
                cold += timed(lambda: first_echo(snap), 1)
            m["reference: create from `base` -> first `echo` (cold, same run)"] = base
            m["create from snapshot -> first `echo` (cold)"] = cold
            warm = api.post(f"/sandboxes/{src.sandbox_id}/snapshots", json={"name": "bench-warm", "warm": True})
            warm_id = warm.json()["snapshotID"]
            samples = []
            for _ in range(runs):
                time.sleep(1.0)  # the pool refills between creates
                t = time.perf_counter()
                first_echo(warm_id)
                samples.append(time.perf_counter() - t)
            m["create from snapshot -> first `echo` (warm pool)"] = samples
            for sbx in made:
                sbx.kill()

            def fork_echo():
                kid = src.fork(count=1, timeout=60)[0]
                assert kid.commands.run("echo hi").stdout == "hi\n"
                kid.kill()

            m["fork -> first `echo` in the child"] = timed(fork_echo, runs)
            src.kill()
            api.delete(f"/templates/{snap}")
            api.delete(f"/templates/{warm_id}")
        finally:
            srv.stop()
        depth_rows = depth_cost(home / "server" / "templates" / "base" / "rootfs", home / "depth")
    finally:
        shutil.rmtree(home, ignore_errors=True)

    rows = [row(k, v) for k, v in m.items()]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cold = p50_ms(m["create from snapshot -> first `echo` (cold)"])
    base = p50_ms(m["reference: create from `base` -> first `echo` (cold, same run)"])
    warm = p50_ms(m["create from snapshot -> first `echo` (warm pool)"])
    text = f"""## Snapshots, fork and layers (`benchmarks/snapshots.py`)

Run {now} by `benchmarks/snapshots.py --runs {runs}` on: {machine()}.

Method: a real `sandlot serve` on loopback (namespace runtime, `base` template), driven by the
official `e2b` SDK and plain HTTP. The source sandbox has 100 MB of random data written in its
layer, so every snapshot and fork commits (copies and hashes) those 100 MB; identical commits share
one layer. "warm pool" = the snapshot taken with `"warm": true` (2 pre-started sandboxes on its
stack), with a pause between creates so the pool refills. Quick runs: other work shared the 2 CPUs.

| operation | p50 ms | p99 ms | runs |
|---|---|---|---|
{chr(10).join(rows)}

Stack depth (on the host: a fresh overlay per run, so every lookup goes down the layers; ext4's
caches warm):

| operation | p50 ms | min ms | runs |
|---|---|---|---|
{chr(10).join(depth_rows)}

Targets (issue 14: as templates):

- {verdict("create from snapshot -> first `echo`, cold, p50", cold, 60)}
- against `base` in the same run (the target is "as fast as from a template"): {cold / base:.2f}x.
- {verdict("create from snapshot -> first `echo`, warm pool, p50", warm, 15)}
{chr(10).join(notes)}
"""
    write_section("snapshots", text)
    print(text)


if __name__ == "__main__":
    main()
