"""Session exec round trip: `session.exec("true")` through the SDK on a live sandbox, next to
`commands.run("true")` (a new login shell per command).

    sudo .venv/bin/python benchmarks/sessions.py [--runs 300] [--dry-run]

Against a real `sandlot serve` started here, one live `base` sandbox; the two are measured in
alternating blocks so drift in the machine's load hits both alike. Also: session create (its login
shell included) and the async SDK's exec. Writes the "sessions" section of docs/benchmarks.md
unless --dry-run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import start_server  # noqa: E402

from report import machine, p50_ms, row, timed, verdict, write_section  # noqa: E402

BLOCK = 10
TARGET_MS = 3.0  # issue 13: session.exec("true") p50 on a live sandbox
QUIET_RUN_MS = 4.02  # commands.run("true") p50 in the core section, measured on a quiet machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--dry-run", action="store_true", help="print, do not write docs/benchmarks.md")
    args = ap.parse_args()

    from sandlot import AsyncSandbox, Sandbox

    server = start_server(Path(tempfile.mkdtemp(prefix="sandlot-bench-sessions-")), pool_size=1,
                          extra_env={"SANDLOT_POOL_TEMPLATES": "base"})
    conn = {"api_url": server.url, "api_key": server.api_key}
    try:
        with Sandbox.create(**conn) as sandbox:
            session = sandbox.session()
            for _ in range(20):  # warm connections and the shell
                session.exec("true")
                sandbox.commands.run("true")
            exec_s, run_s = [], []
            for _ in range(max(1, args.runs // BLOCK)):
                exec_s += timed(lambda: session.exec("true"), BLOCK)
                run_s += timed(lambda: sandbox.commands.run("true"), BLOCK)
            echo_s = timed(lambda: session.exec("echo hello"), args.runs // 3)
            create_s = []
            for _ in range(max(5, args.runs // 30)):
                t = time.perf_counter()
                s = sandbox.session()
                create_s.append(time.perf_counter() - t)
                s.delete()
            session.delete()

            async def async_execs() -> list[float]:
                sbx = await AsyncSandbox.connect(sandbox.sandbox_id, **conn)
                s = await sbx.session()
                out = []
                for i in range(20 + args.runs):
                    t = time.perf_counter()
                    await s.exec("true")
                    if i >= 20:
                        out.append(time.perf_counter() - t)
                await s.delete()
                await sbx.close()
                return out

            async_s = asyncio.run(async_execs())
    finally:
        server.stop()

    load = os.getloadavg()[0]
    lines = [
        "## Sessions (`benchmarks/sessions.py`)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/sessions.py --runs {args.runs}` "
        f"on: {machine()}; load average {load:.1f} at the end (other work shared the CPU: a quick run, "
        "not a quiet-machine figure).",
        "",
        "Method: a real `sandlot serve` on loopback, one live `base` sandbox, sandlot's SDK (blocking `Sandbox`"
        " unless marked async). `session.exec` and `commands.run` alternate in blocks of "
        f"{BLOCK}. Create includes the session's login shell reading its profile.",
        "",
        "| operation | p50 ms | p99 ms | runs |",
        "|---|---|---|---|",
        row("`session.exec(\"true\")`", exec_s),
        row("`session.exec(\"true\")` (async SDK)", async_s),
        row("`session.exec(\"echo hello\")`", echo_s),
        row("`commands.run(\"true\")` (a new `bash -l` each)", run_s),
        row("`sandbox.session()` create", create_s),
        "",
        verdict("- `session.exec(\"true\")` round trip, p50", p50_ms(exec_s), TARGET_MS),
        f"- In the same run `commands.run(\"true\")` took {p50_ms(run_s):.2f} ms, against {QUIET_RUN_MS} ms on a "
        f"quiet machine (core section): scaled by that, `session.exec(\"true\")` would take about "
        f"{p50_ms(exec_s) / p50_ms(run_s) * QUIET_RUN_MS:.2f} ms there (an estimate, not a measurement).",
        "",
        "Where the time goes: HTTP to the control plane (one JSON POST, kept-alive connection), one",
        "unix-socket request to the agent, which writes the command to a file and sends bash one line;",
        "bash sources the file with its output on the session's two FIFOs (kept from one command to the",
        "next) and prints a marker (no fork for a builtin). `commands.run` starts a login shell per",
        "command instead.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.dry_run:
        write_section("sessions", text)


if __name__ == "__main__":
    main()
