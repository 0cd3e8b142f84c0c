"""Soak, short form (issue 17; the long one is `benchmarks/scale.py --soak N`): create -> exec -> file
-> kill cycles, mixed with pause/resume and code contexts, many at once, through the official async
SDKs. Not one fails, and nothing of any sandbox stays on the host: while the server runs (every
cycle killed its sandbox) and after it stopped."""

from __future__ import annotations

import asyncio

import httpx

from host_resources import Footprint
from soak_support import FD_SLACK, soak
from support import leftovers, sdk_environment, start_server, tracebacks

CYCLES = 200
CONCURRENCY = 10


def test_soak_fails_nothing_and_leaks_nothing(tmp_path):
    home = tmp_path / "home"
    footprint = Footprint(home)
    srv = start_server(home, pool_size=0)
    try:
        with sdk_environment(srv):
            result = asyncio.run(soak(srv, CYCLES, concurrency=CONCURRENCY, pause_every=5, code_every=25))
        assert not result.errors, f"{len(result.errors)} cycles failed:\n" + "\n".join(result.errors[:5])
        assert result.kinds == {"plain": 160, "pause": 32, "code": 8}
        health = httpx.get(f"{srv.url}/_sandlot/health").json()
        assert (health["running"], health["paused"]) == (0, 0)
        held = {kind: found for kind, found in footprint.resources(srv.proc.pid).items() if found and kind != "stems"}
        assert not held, f"killed sandboxes still hold host resources while the server runs: {held}"
        # the server keeps each sandbox's agent connection: a kill must close it
        assert result.fds_grown() <= FD_SLACK, f"the server's open fds went from {result.fds[0]} to {result.fds[1]}"
        print(f"soak: {CYCLES} cycles in {result.seconds:.0f} s; server RSS "
              f"{result.rss[0] / 2**20:.0f} -> {result.rss[CYCLES] / 2**20:.0f} MiB, fds {result.fds[0]} -> {result.fds[1]}")
    finally:
        srv.stop()
    assert not leftovers(home)
    held = {kind: found for kind, found in footprint.resources().items() if found}
    assert not held, f"the server left resources on the host: {held}"
    assert not tracebacks(srv.log.read_text(errors="replace"))
