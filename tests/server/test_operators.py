"""What an operator sees of a real server: /metrics (parsed with prometheus-client's own parser)
moving as sandboxes come and go and commands run, one access-log line per request and one line
per lifecycle event (text and JSON), the default template, answers that match the OpenAPI
document."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from e2b import Sandbox as E2BSandbox
from prometheus_client.parser import text_string_to_metric_families

from sandlot import Sandbox
from support import leftovers, start_server

QUIET = {"SANDLOT_POOL_TEMPLATES": ""}  # no warm pools: these tests create what they look at


@pytest.fixture(scope="module")
def srv():
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-ops-"))
    server = start_server(home, pool_size=0, extra_env={**QUIET, "SANDLOT_DEFAULT_TEMPLATE": "code-interpreter"})
    yield server
    server.stop()
    left = leftovers(home)
    shutil.rmtree(home, ignore_errors=True)
    assert not left


@pytest.fixture(scope="module")
def api(srv):
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120) as client:
        yield client


def scrape(api) -> dict[tuple[str, tuple], float]:
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text[:200]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(probe, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def log_with(server, *parts: str) -> str | None:
    """The server's log once a line of it holds all `parts`."""
    log = server.log.read_text()
    return log if any(all(p in line for p in parts) for line in log.splitlines()) else None


def test_metrics_move_with_sandboxes_and_commands(srv, api, monkeypatch):
    before = scrape(api)
    assert value(before, "sandlot_pool_ready", template="base") == 0
    sbx = Sandbox.create(template="base", timeout=120, api_url=srv.url, api_key=srv.api_key)
    try:
        for key, val in srv.env().items():
            monkeypatch.setenv(key, val)
        E2BSandbox.connect(sbx.sandbox_id).commands.run("true")
        during = scrape(api)
        assert value(during, "sandlot_sandboxes", state="running", template="base") == 1
        assert value(during, "sandlot_sandbox_creates_total", template="base", outcome="ok") == \
            value(before, "sandlot_sandbox_creates_total", template="base", outcome="ok") + 1
        assert value(during, "sandlot_sandbox_create_duration_seconds_count", template="base", pooled="false") >= 1
        assert value(during, "sandlot_exec_starts_total", status="200") >= 1
        assert value(during, "sandlot_exec_start_duration_seconds_count") >= 1
        assert value(during, "sandlot_team_sandboxes", team="default", state="running") == 1
        assert value(during, "sandlot_team_memory_limit_bytes", team="default") > 0
        assert value(during, "sandlot_team_sandbox_creates_total", team="default", key="preset") >= 1
        assert value(during, "sandlot_http_requests_total", method="POST", route="/v2/sandboxes", status="201") >= 1
        assert value(during, "process_open_fds") > 0
    finally:
        sbx.kill()
    after = scrape(api)
    assert value(after, "sandlot_sandboxes", state="running", template="base") == 0
    assert value(after, "sandlot_sandbox_kills_total", reason="killed") >= 1
    api.get("/sandboxes/inosuchsandbox00000")
    errors = scrape(api)
    assert value(errors, "sandlot_http_requests_total", method="GET", route="/sandboxes/{sandbox_id}", status="404") >= 1
    # junk paths share one label: a client cannot grow the metrics without bound
    for i in range(3):
        api.get(f"/junk/{i}")
    assert not any("junk" in str(k) for k in scrape(api))


def test_access_log_and_lifecycle_lines(srv, api):
    sid = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60}).json()["sandboxID"]
    api.delete(f"/sandboxes/{sid}")
    # a request's line is written once its answer has gone
    log = wait_for(lambda: log_with(srv, f"DELETE /sandboxes/{{sandbox_id}} 204", sid))
    access = [line for line in log.splitlines() if "sandlot.access:" in line and sid in line]
    assert any(f"POST /v2/sandboxes 201" in line and "key=preset" in line for line in access), access
    assert any("DELETE /sandboxes/{sandbox_id} 204" in line for line in access), access
    events = [line for line in log.splitlines() if "sandlot.events:" in line and sid in line]
    assert any("sandbox created" in line and "template=base" in line for line in events), events
    assert any("sandbox killed" in line and "reason=killed" in line for line in events), events


def test_the_default_template_applies_when_a_create_names_none(srv, api):
    with Sandbox.create(timeout=60, api_url=srv.url, api_key=srv.api_key) as sbx:  # the SDK names none
        assert sbx.template_id == "code-interpreter"
        assert sbx.run_code("1 + 1").text == "2"
    r = api.post("/v2/sandboxes", json={"timeout": 60})
    assert r.status_code == 201 and r.json()["templateID"] == "code-interpreter", r.text
    api.delete(f"/sandboxes/{r.json()['sandboxID']}")


def test_answers_match_the_openapi_document(srv, api):
    doc = api.get("/openapi.json").json()

    def check(body, name: str, many: bool = False) -> None:
        ref = {"$ref": f"#/components/schemas/{name}"}
        schema = {"components": doc["components"], **({"type": "array", "items": ref} if many else ref)}
        jsonschema.Draft202012Validator(schema).validate(body)

    created = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
    sid = created.json()["sandboxID"]
    try:
        check(created.json(), "Sandbox")
        check(api.get(f"/sandboxes/{sid}").json(), "SandboxDetail")
        check(api.get("/v2/sandboxes").json(), "SandboxDetail", many=True)
        check(api.get(f"/sandboxes/{sid}/metrics").json(), "SandboxMetric", many=True)
        check(api.get("/sandboxes/inosuchsandbox00000").json(), "Error")
    finally:
        api.delete(f"/sandboxes/{sid}")


def test_json_logs(tmp_path):
    server = start_server(tmp_path / "home", pool_size=0, extra_env={**QUIET, "SANDLOT_LOG_FORMAT": "json"})
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=60) as api:
            sid = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60}).json()["sandboxID"]
            api.delete(f"/sandboxes/{sid}")
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]  # every line
    create = [e for e in lines if e["logger"] == "sandlot.access" and e.get("route") == "/v2/sandboxes"]
    assert create and create[0]["status"] == 201 and create[0]["sandbox"] == sid and create[0]["key"] == "preset"
    assert create[0]["method"] == "POST" and create[0]["ms"] > 0
    assert {e.get("event") for e in lines if e["logger"] == "sandlot.events" and e.get("sandbox") == sid} == {
        "created", "killed"}
    assert any(e["logger"] == "sandlot.server" and "listening" in e["message"] for e in lines)
