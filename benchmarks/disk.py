"""What a sandbox's own disk costs (runtimes/disk.py): create and kill through the namespace runtime
with and without it, alternated in one process so both see the same machine load; and one disk's
parts (the sparse copy of the blank, the loop device, the mount) alone. Root only.

    sudo .venv/bin/python benchmarks/disk.py [--runs 40]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import link_templates  # noqa: E402

from report import machine, p50_ms, row, write_section  # noqa: E402

from sandlot.runtimes import disk  # noqa: E402
from sandlot.runtimes.namespace import NamespaceRuntime  # noqa: E402
from sandlot.runtimes.policy import Limits, SandboxSpec  # noqa: E402
from sandlot.templates.store import TemplateStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sandlot-disk-bench-")) / "home"
    home.mkdir()
    link_templates(home)
    runtime, template = NamespaceRuntime(home), TemplateStore(home).get("base")
    times: dict[bool, dict[str, list[float]]] = {on: {"create": [], "kill": []} for on in (True, False)}
    parts: dict[str, list[float]] = {"copy + loop + mount": [], "unmount": []}
    try:
        for i in range(args.runs + 3):  # the first rounds warm caches: not counted
            for on in (True, False):
                runtime.disks = on
                sid = secrets.token_hex(10)
                began = time.perf_counter()
                runtime.create(SandboxSpec(sandbox_id=sid, template="base"), template)
                made = time.perf_counter()
                runtime.kill(sid)
                if i >= 3:
                    times[on]["create"].append(made - began)
                    times[on]["kill"].append(time.perf_counter() - made)
            scratch = home / f"scratch{i}"
            scratch.mkdir()
            began = time.perf_counter()
            disk.mount(home / "disks", scratch / "disk.img", scratch / "disk", Limits.disk_mb)
            mounted = time.perf_counter()
            disk.unmount(scratch / "disk")
            if i >= 3:
                parts["copy + loop + mount"].append(mounted - began)
                parts["unmount"].append(time.perf_counter() - mounted)
            (scratch / "disk.img").unlink()
    finally:
        runtime.close()
    added = p50_ms(times[True]["create"]) - p50_ms(times[False]["create"])
    text = "\n".join([
        "## A sandbox's own disk (`benchmarks/disk.py`)",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d}, {machine()}, load average {open('/proc/loadavg').read().split()[0]}.",
        f"Namespace runtime, `base`, no pool; {args.runs} rounds, each a create + kill with a disk of "
        f"its own ({Limits.disk_mb} MiB ext4 on a loop device) then one without (the overlay's upper "
        "on the host's disk, as before), in one process.",
        "",
        "| step | p50 ms | p99 ms | runs |",
        "|---|---|---|---|",
        row("create, own disk", times[True]["create"]),
        row("create, no disk", times[False]["create"]),
        row("kill, own disk", times[True]["kill"]),
        row("kill, no disk", times[False]["kill"]),
        row("disk alone: copy of the blank + loop device + mount", parts["copy + loop + mount"]),
        row("disk alone: unmount", parts["unmount"]),
        "",
        f"The disk adds {added:.1f} ms to a create's p50 here. mkfs runs once per size and home "
        "(~0.2 s for 2 GiB), at the runtime's start for the default size.",
    ])
    write_section("disk", text)
    print(text)


if __name__ == "__main__":
    main()
