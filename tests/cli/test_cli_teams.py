"""`sandlot teams ...` and `sandlot keys create --team/--admin` on a state directory (no server:
these commands work on the database, as an operator on the server's machine would), each change in
the audit trail."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from typer.testing import CliRunner

from sandlot.cli.main import app
from sandlot.server.store import SandboxRecord, Store

runner = CliRunner()


@pytest.fixture
def cli(tmp_path):
    def invoke(*args: str):
        return runner.invoke(app, [*args, "--home", str(tmp_path)])

    invoke.home = tmp_path
    return invoke


def test_teams_keys_and_quotas(cli):
    made = cli("teams", "create", "acme", "--max-sandboxes", "3")
    assert made.exit_code == 0, made.output
    team_id = made.stdout.strip()
    assert team_id.startswith("team_")
    key = json.loads(cli("keys", "create", "ci", "--team", "acme", "--json").stdout)
    assert (key["team"], key["admin"]) == (team_id, False)
    admin = json.loads(cli("keys", "create", "ops", "--admin", "--json").stdout)
    assert (admin["team"], admin["admin"]) == ("default", True)
    listed = cli("keys", "list")
    assert "acme" in listed.stdout and "yes" in listed.stdout and key["key"] not in listed.stdout

    shown = json.loads(cli("teams", "quotas", "acme", "--max-memory-mb", "2048", "--max-sandboxes", "none").stdout)
    assert (shown["max_sandboxes"], shown["max_memory_mb"], shown["max_disk_mb"]) == (None, 2048, None)
    assert shown["usage"] == {"running": 0, "paused": 0, "memory_mb": 0, "disk_mb": 0}
    teams = json.loads(cli("teams", "list", "--json").stdout)
    assert [t["name"] for t in teams] == ["default", "acme"]
    assert cli("teams", "list", "-q").stdout.split() == ["default", "acme"]

    store = Store(cli.home / "state.db")
    assert store.caller(key["key"]).team == team_id
    # a team with a sandbox left is not deleted; once it has none, its keys go with it
    store.insert(SandboxRecord(id="iheld", template="base", state="paused", started_at=time.time(),
                               end_at=time.time() + 60, limits={"memory_mb": 512, "disk_mb": 100}, team=team_id))
    usage = json.loads(cli("teams", "quotas", "acme").stdout)["usage"]
    assert usage == {"running": 0, "paused": 1, "memory_mb": 512, "disk_mb": 100}
    refused = cli("teams", "delete", "acme")
    assert refused.exit_code == 1 and "still has 1 sandbox(es)" in refused.output
    store.update("iheld", state="killed")
    deleted = cli("teams", "delete", "acme")
    assert deleted.exit_code == 0 and "1 key(s) revoked" in deleted.stdout, deleted.output
    assert store.caller(key["key"]) is None
    store.close()

    db = sqlite3.connect(cli.home / "state.db")
    actions = [r[0] for r in db.execute("SELECT action FROM audit WHERE key_id = 'local-cli' ORDER BY id")]
    assert actions == ["team.create", "key.create", "key.create", "team.quotas", "team.delete"]
    assert key["key"] not in repr(list(db.execute("SELECT * FROM audit")))
    db.close()


@pytest.mark.parametrize("args, code, words", [
    (("teams", "create", "Bad Name"), 1, "team names are"),
    (("teams", "create", "x", "--max-sandboxes", "lots"), 2, "whole number or 'none'"),
    (("teams", "delete", "default"), 1, "cannot be deleted"),
    (("teams", "quotas", "nobody"), 1, 'team "nobody" not found'),
    (("keys", "create", "k", "--team", "nobody"), 1, 'team "nobody" not found'),
])
def test_mistakes_are_one_line_errors(cli, args, code, words):
    result = cli(*args)
    assert result.exit_code == code and words in result.output, result.output
    assert "Traceback" not in result.output


def test_a_team_name_is_taken_once(cli):
    assert cli("teams", "create", "twice").exit_code == 0
    again = cli("teams", "create", "twice")
    assert again.exit_code == 1 and 'team "twice" already exists' in again.output
