"""`sandlot pause|resume|kill --all|logs|metrics|stats` against a real server (typer's CliRunner)."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from sandlot import Sandbox
from sandlot.cli.main import app

runner = CliRunner()


@pytest.fixture
def cli(server):
    env = {"SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}

    def invoke(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, list(args), env=env, input=input)

    return invoke


@pytest.fixture
def made(cli, server):
    """made(n, *create options) -> n new sandbox ids, all killed at the end."""
    ids = []

    def make(n: int = 1, *options: str) -> list[str]:
        for _ in range(n):
            created = cli("create", "--timeout", "120", *options)
            assert created.exit_code == 0, created.output
            ids.append(created.stdout.strip())
        return ids[-n:]

    yield make
    for sid in ids:
        Sandbox.kill(sid, api_url=server.url, api_key=server.api_key)


def test_pause_and_resume(cli, made, server):
    sid, = made()
    assert cli("exec", sid, "--", "sh", "-c", "echo 1 > /tmp/state").exit_code == 0
    paused = cli("pause", sid)
    assert (paused.exit_code, paused.stdout) == (0, f"paused {sid}\n")
    assert Sandbox.get_info(sid, api_url=server.url, api_key=server.api_key).state == "paused"
    assert "already paused" in cli("pause", sid).stderr
    listed = json.loads(cli("ls", "--json", "--state", "paused").stdout)
    assert sid in [s["sandbox_id"] for s in listed]
    resumed = cli("resume", sid)
    assert (resumed.exit_code, resumed.stdout) == (0, f"resumed {sid}\n")
    assert "already running" in cli("resume", sid).stderr
    assert cli("exec", sid, "cat /tmp/state").stdout == "1\n"  # memory and files as they were
    missing = cli("pause", "inosuchsandbox", sid)
    assert missing.exit_code == 1 and 'error: sandbox "inosuchsandbox" not found' in missing.stderr
    assert f"paused {sid}" in missing.stdout  # the others are still done
    assert cli("resume", "inosuchsandbox").exit_code == 1


def test_kill_all_with_filters(cli, made, server):
    suite = uuid.uuid4().hex[:8]
    keep, = made(1, "-m", f"suite={suite}", "-m", "role=keep")
    drop = made(2, "-m", f"suite={suite}", "-m", "role=drop")
    paused, = made(1, "-m", f"suite={suite}", "-m", "role=drop")
    assert cli("pause", paused).exit_code == 0
    only_paused = cli("kill", "--all", "-m", f"suite={suite}", "-s", "paused")
    assert (only_paused.exit_code, only_paused.stdout) == (0, f"killed {paused}\n")
    killed = cli("kill", "--all", "-m", f"suite={suite}", "-m", "role=drop")
    assert killed.exit_code == 0 and sorted(killed.stdout.split()) == sorted(["killed"] * 2 + drop)
    assert cli("ls", "-q", "-m", f"suite={suite}").stdout == f"{keep}\n"
    assert "no sandboxes" in cli("kill", "--all", "-m", f"suite={suite}", "-m", "role=drop").stderr
    assert cli("kill").exit_code == 2  # ids or --all
    assert cli("kill", "--all", keep).exit_code == 2
    assert cli("kill", "-m", "a=b", keep).exit_code == 2  # filters go with --all


def test_logs(cli, made):
    sid, = made()
    assert cli("exec", sid, "--", "sh", "-c", "exit 4").exit_code == 4
    assert cli("pause", sid).exit_code == 0
    assert cli("resume", sid).exit_code == 0
    shown = cli("logs", sid)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "created from template base" in lines[0] and " INFO " in lines[0] and "lifecycle" in lines[0]
    assert any("started: sh -c 'exit 4'" in line or "started: /bin/bash -l -c" in line for line in lines)
    assert any("exited with code 4" in line for line in lines)
    assert lines[-2:][0].endswith("paused") and lines[-1].endswith("resumed")
    as_json = json.loads(cli("logs", sid, "--json").stdout)
    assert [e["message"] for e in as_json][-2:] == ["paused", "resumed"]
    assert set(as_json[0]) == {"timestamp", "level", "message", "fields"}
    assert cli("logs", sid, "--level", "warn", "--json").stdout == "[]\n"
    # --follow ends when the sandbox does
    assert cli("kill", sid).exit_code == 0
    followed = cli("logs", sid, "--follow", "--json", "--since", "60")
    assert followed.exit_code == 0
    assert json.loads(followed.stdout.splitlines()[-1])["message"] == "ended: killed"
    missing = cli("logs", "inosuchsandbox")
    assert (missing.exit_code, missing.stderr) == (1, 'error: sandbox "inosuchsandbox" not found\n')


def test_metrics_and_stats(cli, made):
    a, b = made(2, "-m", "stats=yes")
    cli("exec", a, "timeout 1 sh -c 'while :; do :; done'; true")
    samples = json.loads(cli("metrics", a, "--json").stdout)
    assert samples and samples[-1]["cpu_used_pct"] > 10 and samples[-1]["mem_total"] == 512 << 20
    assert set(samples[-1]) >= {"timestamp", "cpu_used_pct", "mem_used", "mem_total", "disk_used", "disk_total"}
    table = cli("metrics", a)
    assert table.exit_code == 0 and "512.0 MiB" in table.stdout and "%" in table.stdout
    now = json.loads(cli("stats", "-m", "stats=yes", "--json").stdout)
    assert sorted(s["sandbox_id"] for s in now) == sorted([a, b])
    assert all(s["mem_used"] > 0 for s in now)
    shown = cli("stats", a)
    assert shown.exit_code == 0 and a in shown.stdout and b not in shown.stdout
    missing = cli("stats", "inosuchsandbox")
    assert missing.exit_code == 1 and 'error: sandbox "inosuchsandbox" not found' in missing.stderr
    assert cli("metrics", "inosuchsandbox").exit_code == 1
