"""Resource limits over REST (sandlot's `limits` extension of the create body): bad values get a
400 JSON error naming the field, and no sandbox."""

from __future__ import annotations

import uuid

import httpx
import pytest

BAD_LIMITS = [
    ({"memory_mb": -1}, "memory_mb"), ({"memory_mb": 0}, "memory_mb"), ({"memory_mb": 10**12}, "memory_mb"),
    ({"cpu_count": 0}, "cpu_count"), ({"cpu_count": -0.5}, "cpu_count"), ({"cpu_count": 1000}, "cpu_count"),
    ({"pids": 0}, "pids"), ({"pids": -5}, "pids"), ({"pids": 10**7}, "pids"),
    ({"disk_mb": 0}, "disk_mb"), ({"disk_mb": 2**40}, "disk_mb"),
    ({"memory_mb": "512"}, "memory_mb"), ({"memory_mb": 256.5}, "memory_mb"), ({"memory_mb": True}, "memory_mb"),
    ({"cpu_count": "fast"}, "cpu_count"), ({"pids": None}, "pids"), ({"pids": [64]}, "pids"),
    ({"gpus": 1}, "gpus"), ({"memory": 256}, "memory"),  # unknown keys, e.g. a misspelt limit
    ("lots", "limits"), ([256], "limits"),
]


def _create(api, tag: str, limits) -> httpx.Response:
    return api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, "metadata": {"tag": tag},
                                           "limits": limits})


@pytest.mark.parametrize("limits,field", BAD_LIMITS, ids=[repr(b[0]) for b in BAD_LIMITS])
def test_bad_limits_are_refused(api, limits, field):
    tag = uuid.uuid4().hex
    r = _create(api, tag, limits)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == 400 and field in body["message"], body
    assert api.get("/v2/sandboxes", params={"metadata": f"tag={tag}"}).json() == []


def test_nan_and_infinity_are_refused(api):
    for raw in ("NaN", "Infinity", "-Infinity"):  # Python's json reads these; they are no limits
        r = api.post("/v2/sandboxes", content=f'{{"templateID": "base", "limits": {{"cpu_count": {raw}}}}}',
                     headers={"content-type": "application/json"})
        assert r.status_code == 400 and "cpu_count" in r.json()["message"], r.text


def test_good_limits_are_applied(api):
    r = _create(api, uuid.uuid4().hex, {"memory_mb": 256, "cpu_count": 1, "pids": 128, "disk_mb": 1024})
    assert r.status_code == 201, r.text
    sid = r.json()["sandboxID"]
    info = api.get(f"/sandboxes/{sid}").json()
    assert (info["memoryMB"], info["diskSizeMB"], info["cpuCount"]) == (256, 1024, 1)
    assert api.delete(f"/sandboxes/{sid}").status_code == 204
