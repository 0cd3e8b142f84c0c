"""Tool-call overhead: the same work through the tool dispatcher and through the raw SDK call.

    sudo .venv/bin/python benchmarks/tools.py [--runs 200] [--dry-run]

Against a real `sandlot serve` started here, on one live sandbox, in alternating blocks (so drift
in the machine's load hits both sides alike): `run_shell_command` vs `commands.run("true")`,
`read_file` vs `files.read`, `write_file` vs `files.write`; and the dispatcher alone (argument
validation, result shaping, rendering for OpenAI) on a function tool that does no I/O. Writes the
"tools" section of docs/benchmarks.md unless --dry-run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import start_server  # noqa: E402

from report import machine, p50_ms, row, timed, write_section  # noqa: E402

BLOCK = 10


def alternate(raw, tool, runs: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    for _ in range(max(1, runs // BLOCK)):
        a += timed(raw, BLOCK)
        b += timed(tool, BLOCK)
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--dry-run", action="store_true", help="print, do not write docs/benchmarks.md")
    args = ap.parse_args()

    from sandlot import Sandbox
    from sandlot.tools import Toolset, tool

    server = start_server(Path(tempfile.mkdtemp(prefix="sandlot-bench-tools-")), pool_size=1)
    try:
        with Sandbox.create(api_url=server.url, api_key=server.api_key) as sandbox:
            tools = Toolset(sandbox)
            sandbox.files.write("bench.txt", "x" * 1000)
            for _ in range(5):  # warm connections
                sandbox.commands.run("true")
                tools.call_tool("run_shell_command", {"command": "true"})
            pairs = {
                "exec `true`": alternate(lambda: sandbox.commands.run("true"),
                                         lambda: tools.call_tool("run_shell_command", {"command": "true"}), args.runs),
                "read 1 KB file": alternate(lambda: sandbox.files.read("bench.txt"),
                                            lambda: tools.call_tool("read_file", {"path": "bench.txt"}), args.runs),
                "write 1 KB file": alternate(lambda: sandbox.files.write("w.txt", "y" * 1000),
                                             lambda: tools.call_tool("write_file", {"path": "w.txt", "content": "y" * 1000}),
                                             args.runs),
            }

            @tool
            def add(a: int, b: int) -> int:
                """Add two integers."""
                return a + b

            local = Toolset(None, [add])
            dispatch = timed(lambda: local.call_tool("add", '{"a": 1, "b": 2}').to_openai("call_1"), args.runs)
    finally:
        server.stop()

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = ["## Tool-call overhead (benchmarks/tools.py)", "",
             f"Run {when} UTC by `benchmarks/tools.py --runs {args.runs}` on: {machine()}. Method: a real `sandlot "
             f"serve`, one live sandbox, the blocking Toolset against the blocking SDK, in alternating blocks of "
             f"{BLOCK}.", "", "| operation | p50 ms | p99 ms | n |", "|---|---|---|---|"]
    summary = []
    for name, (raw, through) in pairs.items():
        lines += [row(f"{name}: SDK", raw), row(f"{name}: tool", through)]
        summary.append(f"{name}: {p50_ms(through) - p50_ms(raw):+.2f} ms")
    lines += [row("dispatcher only (function tool, JSON args, OpenAI result)", dispatch), "",
              "Overhead of the tool layer at p50 (tool minus SDK): " + "; ".join(summary) + ". The blocking "
              "Toolset adds one hop to the SDK's event loop thread; read_file streams and checks the file "
              "(binary, image, size) and write_file reports size and type."]
    text = "\n".join(lines)
    print(text)
    if not args.dry_run:
        write_section("tools", text)


if __name__ == "__main__":
    main()
