from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def make_sandbox(e2b_env):
    """Create sandboxes through the REST API (with sandlot's `limits` extension) and open them with
    the official e2b SDK. Every sandbox is killed at the end of the test."""
    from e2b import Sandbox

    created = []

    def make(**limits):
        body = {"templateID": "base", "timeout": 120, "metadata": {}, "envVars": {}}
        if limits:
            body["limits"] = limits
        r = httpx.post(f"{e2b_env.url}/v2/sandboxes", json=body, headers={"X-API-KEY": e2b_env.api_key},
                       timeout=120)
        assert r.status_code == 201, r.text
        sbx = Sandbox.connect(r.json()["sandboxID"])
        created.append(sbx)
        return sbx

    yield make
    for sbx in created:
        try:
            sbx.kill()
        except Exception:
            pass
