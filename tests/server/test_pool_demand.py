"""Warm pools sized by demand (server/pools.py): a burst of creates grows a pool to what was claimed
in the last SANDLOT_POOL_WINDOW seconds (up to SANDLOT_POOL_MAX), the surplus goes once the window
has passed, and growth past the base size stays within SANDLOT_POOL_MEMORY_MB. Read from /metrics
as an operator would."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import leftovers, start_server

WINDOW = 4


def _pool(api: httpx.Client) -> tuple[float, float]:
    """(ready, target) of the base template's pool."""
    found = {s.name: s.value for family in text_string_to_metric_families(api.get("/metrics").text)
             for s in family.samples if s.labels.get("template") == "base" and s.name.startswith("sandlot_pool_")}
    return found.get("sandlot_pool_ready", 0.0), found.get("sandlot_pool_target", 0.0)


def _until(api, want: tuple[float, float], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (seen := _pool(api)) != want:
        assert time.monotonic() < deadline, f"pool {seen}, expected {want}"
        time.sleep(0.1)


@pytest.fixture
def server(tmp_path):
    servers = []

    def start(**env):
        home = tmp_path / f"home{len(servers)}"
        srv = start_server(home, pool_size=1, extra_env={"SANDLOT_POOL_TEMPLATES": "base", "SANDLOT_POOL_MAX": "4",
                                                        "SANDLOT_POOL_WINDOW": str(WINDOW), **env})
        servers.append((srv, home))
        return srv, httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120)

    yield start
    for srv, home in servers:
        srv.stop()
        assert "Traceback" not in srv.log.read_text()
        assert not leftovers(home)


def _burst(api: httpx.Client, n: int) -> list[str]:
    def create(_):
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 120})
        assert r.status_code == 201, r.text
        return r.json()["sandboxID"]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(create, range(n)))


def test_a_burst_grows_the_pool_and_the_surplus_goes_after_the_window(server):
    srv, api = server()
    _until(api, (1, 1))
    made = _burst(api, 6)
    _until(api, (4, 4))  # 6 claimed in the window, 4 at most
    for sid in made:
        assert api.delete(f"/sandboxes/{sid}").status_code == 204
    time.sleep(WINDOW)
    _until(api, (1, 1), timeout=WINDOW + 10)  # back to its base size, the rest killed
    assert "pool base: 3 warm sandbox(es) fewer" in srv.log.read_text()


def test_growth_stays_within_the_pools_memory_budget(server):
    srv, api = server(SANDLOT_POOL_MEMORY_MB="1")  # less than one idle sandbox uses
    _until(api, (1, 1))
    made = _burst(api, 6)
    _until(api, (1, 4))  # the base size is kept; past it, no room
    time.sleep(2)
    assert _pool(api) == (1, 4)
    for sid in made:
        assert api.delete(f"/sandboxes/{sid}").status_code == 204
