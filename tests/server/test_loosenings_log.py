"""Every loosening of a sandbox's policy is logged once, when the sandbox is handed out: not for the
pooled sandboxes made ahead of time, and not twice."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from sandlot.runtimes.policy import SandboxSpec


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=120) as client:
        yield client


def test_loosenings_name_sudo_and_host_paths():
    spec = SandboxSpec("i0", "base")
    assert any(line.startswith("sudo") for line in spec.loosenings())
    assert SandboxSpec("i0", "base", allow_sudo=False).loosenings() == []

    class HostTemplate:
        ro_binds = (("/usr", "/usr"), ("/etc/ssl/certs", "/etc/ssl/certs"))

    assert "read-only host paths: /usr, /etc/ssl/certs" in spec.loosenings(HostTemplate())


def test_each_sandbox_handed_out_logs_its_loosenings_once(server, api):
    created = []
    for body in ({}, {"envVars": {"A": "b"}}):  # the first may come from the pool, the second never does
        r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, **body})
        assert r.status_code == 201, r.text
        created.append(r.json()["sandboxID"])
    try:
        time.sleep(0.5)  # the pool refills meanwhile: those sandboxes are made, not handed out
        log = server.log.read_text(errors="replace")
        for sid in created:
            lines = re.findall(rf"INFO sandlot\.service: sandbox {sid} loosenings: (.*)", log)
            assert len(lines) == 1, (sid, lines)
            assert lines[0].startswith("sudo: its user may become root inside the sandbox's own user namespace")
        handed_out = {s["sandboxID"] for s in api.get("/v2/sandboxes").json()}
        pooled = {p.name for p in (server.home / "sandboxes").iterdir()} - handed_out
        assert pooled, "the test server keeps a pool"
        assert not [sid for sid in pooled if f"sandbox {sid} loosenings" in log]
    finally:
        for sid in created:
            api.delete(f"/sandboxes/{sid}")
