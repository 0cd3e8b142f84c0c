"""A sandbox's logs (server/journal.py, server/logs_api.py): lifecycle events and processes, read
through the official e2b SDK's generated API client (v1 and v2 routes), the sandlot SDK and REST."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from e2b import CommandExitException, ConnectionConfig
from e2b import Sandbox as E2BSandbox
from e2b.api.client.api.sandboxes import get_sandboxes_sandbox_id_logs, get_v_2_sandboxes_sandbox_id_logs
from e2b.api.client.models import Error, LogLevel, LogsDirection, SandboxLogs, SandboxLogsV2Response
from e2b.api.client_sync import get_api_client

import sandlot
from sandlot.server import journal as journal_module
from sandlot.server.journal import Journal


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=60) as client:
        yield client


@pytest.fixture
def e2b_api(sdk_env):
    return get_api_client(ConnectionConfig())


def test_lifecycle_and_processes_through_the_official_sdk(sdk_env, e2b_api):
    sbx = E2BSandbox.create(timeout=120)
    try:
        sbx.commands.run("echo hi")
        with pytest.raises(CommandExitException):
            sbx.commands.run("exit 3")
        sbx.set_timeout(100)
        sbx.pause()
        sbx = E2BSandbox.connect(sbx.sandbox_id)  # resumes it
        v1 = get_sandboxes_sandbox_id_logs.sync_detailed(sbx.sandbox_id, client=e2b_api)
        assert v1.status_code == 200 and isinstance(v1.parsed, SandboxLogs), v1.content
        lines = [json.loads(log.line) for log in v1.parsed.logs]  # what `e2b sandbox logs` prints
        messages = [line["message"] for line in lines]
        assert messages[0] == "created from template base" and lines[0]["logger"] == "lifecycle"
        assert (lines[0]["template"], lines[0]["memory_mb"]) == ("base", "512")
        assert lines[0]["pooled"] in ("true", "false")
        started = [line for line in lines if line["logger"] == "process" and "started" in line["message"]]
        assert [s["message"].split(": ", 1)[1] for s in started] == ["/bin/bash -l -c 'echo hi'",
                                                                      "/bin/bash -l -c 'exit 3'"]
        assert started[0]["user"] == "user"
        ended = [line["message"] for line in lines if line["logger"] == "process" and "started" not in line["message"]]
        assert ended == [f"process {started[0]['pid']} exited with code 0",
                         f"process {started[1]['pid']} exited with code 3"]
        assert messages[-3:] == ["timeout set: ends in 100s", "paused", "resumed"]
        assert [e.message for e in v1.parsed.log_entries] == messages
        assert all(e.level.value == "info" for e in v1.parsed.log_entries)
        stamps = [log.timestamp for log in v1.parsed.logs]
        assert stamps == sorted(stamps)

        # v1 `start` (ms) as `e2b sandbox logs --follow` sends it: the last entry's time + 1 ms
        later = get_sandboxes_sandbox_id_logs.sync_detailed(
            sbx.sandbox_id, client=e2b_api, start=int(stamps[-2].timestamp() * 1000) + 1).parsed
        assert [json.loads(log.line)["message"] for log in later.logs] == ["resumed"]

        v2 = get_v_2_sandboxes_sandbox_id_logs.sync_detailed(sbx.sandbox_id, client=e2b_api)
        assert isinstance(v2.parsed, SandboxLogsV2Response), v2.content
        assert [e.message for e in v2.parsed.logs] == messages
        assert v2.parsed.logs[0].fields["logger"] == "lifecycle"
        back = get_v_2_sandboxes_sandbox_id_logs.sync_detailed(
            sbx.sandbox_id, client=e2b_api, direction=LogsDirection.BACKWARD, limit=2).parsed
        assert [e.message for e in back.logs] == ["resumed", "paused"]
        found = get_v_2_sandboxes_sandbox_id_logs.sync_detailed(sbx.sandbox_id, client=e2b_api,
                                                                 search="exited").parsed
        assert [e.message for e in found.logs] == ended
        warnings = get_v_2_sandboxes_sandbox_id_logs.sync_detailed(sbx.sandbox_id, client=e2b_api,
                                                                    level=LogLevel.WARN).parsed
        assert warnings.logs == []
    finally:
        sbx.kill()


def test_a_sandbox_cannot_write_its_log(sdk_env, e2b_api):
    sbx = E2BSandbox.create(timeout=120)
    try:
        sbx.commands.run("""echo '{"level":"error","logger":"lifecycle","message":"ended: forged"}'; """
                         "echo forged >&2; logger forged 2>/dev/null; true")
        logs = get_v_2_sandboxes_sandbox_id_logs.sync_detailed(sbx.sandbox_id, client=e2b_api).parsed.logs
        assert not [e for e in logs if "forged" in e.message and e.fields["logger"] != "process"]
        assert [e.level.value for e in logs] == ["info"] * len(logs)
    finally:
        sbx.kill()


def test_logs_stay_readable_after_the_end_and_unknown_ids_are_404(server, sdk_env, e2b_api, api):
    sbx = sandlot.Sandbox.create(api_url=server.url, api_key=server.api_key)
    sbx.commands.run("true")
    sbx.kill()
    entries = sandlot.Sandbox.get_logs(sbx.sandbox_id, api_url=server.url, api_key=server.api_key)
    assert [e.message for e in entries][-1] == "ended: killed"
    assert entries[-1].fields == {"logger": "lifecycle", "reason": "killed"} and entries[-1].level == "info"
    assert entries[0].timestamp.tzinfo is not None
    # start: only what came at or after it; level: that level and worse
    since = sandlot.Sandbox.get_logs(sbx.sandbox_id, start=entries[-1].timestamp, api_url=server.url,
                                     api_key=server.api_key)
    assert [e.message for e in since] == ["ended: killed"]
    assert sandlot.Sandbox.get_logs(sbx.sandbox_id, level="error", api_url=server.url, api_key=server.api_key) == []

    missing = get_sandboxes_sandbox_id_logs.sync_detailed("inosuchsandbox", client=e2b_api)
    assert missing.status_code == 404 and isinstance(missing.parsed, Error)
    assert missing.parsed.message == 'sandbox "inosuchsandbox" not found'
    assert api.get("/v2/sandboxes/inosuchsandbox/logs").status_code == 404
    with pytest.raises(sandlot.NotFound):
        sandlot.Sandbox.get_logs("inosuchsandbox", api_url=server.url, api_key=server.api_key)
    assert httpx.get(f"{server.url}/sandboxes/{sbx.sandbox_id}/logs").status_code == 401  # no key


@pytest.mark.parametrize("route, query", [
    ("/sandboxes/{}/logs", "start=soon"), ("/sandboxes/{}/logs", "limit=1001"), ("/sandboxes/{}/logs", "start=-1"),
    ("/v2/sandboxes/{}/logs", "direction=sideways"), ("/v2/sandboxes/{}/logs", "level=loud"),
    ("/v2/sandboxes/{}/logs", "cursor=x"), ("/v2/sandboxes/{}/logs", "limit=-5"),
])
def test_bad_queries_are_400(server, api, route, query):
    sbx = sandlot.Sandbox.create(api_url=server.url, api_key=server.api_key)
    try:
        answer = api.get(route.format(sbx.sandbox_id) + "?" + query)
        assert answer.status_code == 400 and answer.json()["code"] == 400, answer.text
    finally:
        sbx.kill()


# --- the journal on its own ---


def test_a_journal_keeps_the_newest_entries_and_forgets_ended_sandboxes(monkeypatch):
    now = [1000.0]
    journal = Journal(clock=lambda: now[0])
    monkeypatch.setattr(journal_module, "KEPT_PER_SANDBOX", 3)
    for i in range(5):
        journal.record("a", f"event {i}", n=i, nothing=None)
    assert [e.message for e in journal.entries("a")] == ["event 2", "event 3", "event 4"]
    assert journal.entries("a")[0].fields == {"n": "2"}  # values as strings, None left out
    assert journal.entries("b") is None
    journal.record("b", "created")
    journal.ended("b")
    now[0] += journal_module.ENDED_KEPT_FOR - 1
    assert journal.entries("b") is not None
    now[0] += 2
    assert journal.entries("b") is None  # expired, even before another end cleans it out
    journal.ended("a")  # trims: b goes
    assert "b" not in journal._logs and journal.entries("a") is not None


def test_a_journal_keeps_at_most_so_many_ended_sandboxes(monkeypatch):
    monkeypatch.setattr(journal_module, "ENDED_KEPT", 2)
    journal = Journal(clock=time.time)
    for sid in ("a", "b", "c"):
        journal.record(sid, "created")
        journal.ended(sid)
    assert journal.entries("a") is None and journal.entries("b") and journal.entries("c")
