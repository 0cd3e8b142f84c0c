"""Clients polling the metrics of a sandbox with 300k files must not slow anyone else down: reading
its disk use walks the whole tree, which once ran in the executor creates and kills use too (12
pollers made an unrelated create take 11.6 s). Now the walks have a thread of their own and a
reading is reused while fresh (usage.py, USAGE_THREADS, DISK_WALK_SPACING), and where the sandbox
has a disk of its own (runtimes/disk.py) the reading is one statvfs."""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest

from support import start_server

FILES = 120_000  # the default disk (2 GiB) holds 131,072 files
POLLERS = 12


@pytest.fixture
def srv(tmp_path):
    server = start_server(tmp_path / "home", pool_size=0)
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text()


def _create_seconds(http: httpx.Client, runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        began = time.perf_counter()
        r = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
        took.append(time.perf_counter() - began)
        assert r.status_code == 201, r.text
        assert http.delete(f"/sandboxes/{r.json()['sandboxID']}").status_code == 204
    return took


def test_metrics_polling_of_a_huge_tree_leaves_creates_alone(srv):
    from e2b import Sandbox

    hoarder = Sandbox.create(timeout=900, api_key=srv.api_key, api_url=srv.url, sandbox_url=srv.url)
    hoarder.commands.run(f"python3 -c \"import os\nfor d in range({FILES // 1000}):\n os.mkdir(f'/home/user/m{{d}}')\n"
                         f" for f in range(1000): open(f'/home/user/m{{d}}/{{f}}', 'w').close()\"", timeout=600)
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120) as http:
        began = time.perf_counter()
        first = http.get(f"/sandboxes/{hoarder.sandbox_id}/metrics").json()[-1]
        walk = time.perf_counter() - began
        assert first["diskUsed"] > 0
        idle = _create_seconds(http, 8)

        stop = threading.Event()
        answered = []

        def poll() -> None:
            with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120) as client:
                while not stop.is_set():
                    r = client.get(f"/sandboxes/{hoarder.sandbox_id}/metrics")
                    answered.append(r.status_code)
                    stop.wait(0.05)

        pollers = [threading.Thread(target=poll) for _ in range(POLLERS)]
        for t in pollers:
            t.start()
        try:
            time.sleep(1)
            busy = _create_seconds(http, 8)
        finally:
            stop.set()
            for t in pollers:
                t.join()
    hoarder.kill()
    print(f"\nfirst disk walk of {FILES} files: {walk:.2f} s; create p50 idle {statistics.median(idle) * 1000:.0f} ms, "
          f"under {POLLERS} pollers {statistics.median(busy) * 1000:.0f} ms ({len(answered)} metrics answered)")
    assert set(answered) == {200} and len(answered) > POLLERS * 10
    assert statistics.median(busy) <= 2 * statistics.median(idle), (idle, busy)
