"""Templates built from recipes; writes its section of docs/benchmarks.md.

    sudo .venv/bin/python benchmarks/templates.py [--runs 5]

Measures, against a real `sandlot serve` started here, through the official `e2b` SDK's
`Template.build()`: a small recipe (from `base`: COPY of a file, ENV, WORKDIR, two RUNs) built
uncached (every step in a sandbox and committed as a layer) and cached (the same recipe again: every
step a cache hit), and create -> first `echo` from the built template against `base` in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import start_server  # noqa: E402

from report import machine, p50_ms, row, timed, verdict, write_section  # noqa: E402


def recipe(context: Path, nonce: str):
    from e2b import Template

    return (Template(file_context_path=str(context)).from_template("base")
            .copy("app.py", "/home/user/app/")
            .set_envs({"APP_MODE": "bench"})
            .set_workdir("/home/user/app")
            .run_cmd(f"echo {nonce} > build-id && python3 -m compileall -q .")
            .run_cmd("mkdir -p /home/user/data && seq 1 10000 > /home/user/data/numbers"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = args.runs
    from e2b import Sandbox, Template

    m: dict[str, list[float]] = {}
    home = Path(tempfile.mkdtemp(prefix="sandlot-bench-"))
    try:
        srv = start_server(home / "server", pool_size=2, extra_env={"SANDLOT_POOL_TEMPLATES": ""})
        os.environ.update(srv.env())
        api = httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=300)
        context = home / "context"
        context.mkdir()
        (context / "app.py").write_text("print('bench')\n")
        name = "bench-" + uuid.uuid4().hex[:6]
        try:
            uncached = []
            for i in range(runs):  # a new nonce: the RUN steps (and all after them) miss the cache
                nonce = uuid.uuid4().hex
                uncached += timed(lambda: Template.build(recipe(context, nonce), name), 1)
            m["build of the recipe, its two RUN steps uncached (each in a sandbox, committed)"] = uncached
            nonce = uuid.uuid4().hex
            Template.build(recipe(context, nonce), name)
            m["the same build again (every step a cache hit)"] = timed(
                lambda: Template.build(recipe(context, nonce), name), runs)

            made = []

            def first_echo(template: str):
                sbx = Sandbox.create(template, timeout=120)
                assert sbx.commands.run("echo hi").stdout == "hi\n"
                made.append(sbx)

            base, custom = [], []
            for _ in range(runs * 2):  # alternating, so both see the same load
                base += timed(lambda: first_echo("base"), 1)
                custom += timed(lambda: first_echo(name), 1)
            m["reference: create from `base` -> first `echo` (cold, same run)"] = base
            m["create from the built template -> first `echo` (cold)"] = custom
            for sbx in made:
                sbx.kill()
        finally:
            api.delete(f"/templates/{name}")
            srv.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    rows = [row(k, v) for k, v in m.items()]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cold = p50_ms(m["create from the built template -> first `echo` (cold)"])
    base = p50_ms(m["reference: create from `base` -> first `echo` (cold, same run)"])
    text = f"""## Templates from recipes (`benchmarks/templates.py`)

Run {now} by `benchmarks/templates.py --runs {runs}` on: {machine()}.

Method: a real `sandlot serve` on loopback (namespace runtime), driven by the official `e2b` SDK's
`Template.build()` (request, upload of one file by hash, build start, status polled every 0.2 s as
the SDK does). The recipe: from `base`, COPY one file, ENV, WORKDIR (a sandbox: it makes the
directory), two RUNs. Uncached: a new value in the first RUN each time, so both RUNs run in a
sandbox of their own and are committed as layers (COPY and WORKDIR are cache hits after the first
run). A build's time includes the SDK's polling (every 0.2 s): a fully cached build is about one
poll. Quick runs: other work shared the 2 CPUs.

| operation | p50 ms | p99 ms | runs |
|---|---|---|---|
{chr(10).join(rows)}

Targets (issue 15: as `base`):
- {verdict("create from a built template -> first `echo`, cold, p50", cold, 60)}
- against `base` in the same run: {cold / base:.2f}x (the template's layers are id-mapped and
  stacked at create: one mount each).
"""
    write_section("templates", text)
    print(text)


if __name__ == "__main__":
    main()
