"""What scripts read from the CLI: --json that parses, -q ids, --version, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import datetime
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from sandlot import Sandbox
from sandlot.cli.main import app
from support import REPO

runner = CliRunner()
SANDLOT = str(REPO / ".venv" / "bin" / "sandlot")


@pytest.fixture
def cli(server):
    env = {"SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}
    return lambda *args: runner.invoke(app, list(args), env=env)


def test_create_and_ls_json_and_quiet(cli, server):
    suite = uuid.uuid4().hex[:8]
    created = cli("create", "--json", "-m", f"suite={suite}", "--memory-mb", "256", "--timeout", "120")
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    try:
        assert info["state"] == "running" and info["template_id"] == "base" and info["memory_mb"] == 256
        assert info["metadata"] == {"suite": suite}
        assert datetime.fromisoformat(info["end_at"]) > datetime.fromisoformat(info["started_at"])
        listed = json.loads(cli("ls", "--json", "-m", f"suite={suite}").stdout)
        assert listed == [info]
        assert cli("ls", "-q", "-m", f"suite={suite}").stdout == info["sandbox_id"] + "\n"
        assert cli("ls", "--json", "-m", "suite=none").stdout == "[]\n"
        assert cli("ls", "-q", "-m", "suite=none").stdout == ""
    finally:
        Sandbox.kill(info["sandbox_id"], api_url=server.url, api_key=server.api_key)


def test_keys_json_and_quiet(tmp_path):
    home = ["--home", str(tmp_path)]
    made = json.loads(runner.invoke(app, ["keys", "create", "ci", "--json", *home]).stdout)
    assert made["name"] == "ci" and made["key"] and made["id"]
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json", *home]).stdout)
    assert listed == [{"id": made["id"], "name": "ci", "team": "default", "admin": False,
                       "prefix": made["key"][:len(listed[0]["prefix"])], "created_at": listed[0]["created_at"],
                       "revoked_at": None}]
    assert made["key"] not in json.dumps(listed)  # never the key itself
    assert runner.invoke(app, ["keys", "list", "-q", *home]).stdout == made["id"] + "\n"
    assert runner.invoke(app, ["keys", "revoke", made["id"], *home]).exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json", *home]).stdout)[0]["revoked_at"]
    again = runner.invoke(app, ["keys", "revoke", made["id"], *home])
    assert (again.exit_code, again.stderr) == (1, f'error: active key "{made["id"]}" not found\n')


def test_template_list_json_and_quiet(server):
    home = ["--home", str(server.home)]
    listed = json.loads(runner.invoke(app, ["template", "list", "--json", *home]).stdout)
    base = next(t for t in listed if t["name"] == "base")
    assert base["status"] == "built" and base["build_seconds"] is not None
    assert set(base) == {"name", "status", "built_at", "build_seconds"}
    names = runner.invoke(app, ["template", "list", "-q", *home]).stdout.split()
    assert names == [t["name"] for t in listed] and "code-interpreter" in names


def test_version():
    shown = runner.invoke(app, ["--version"])
    assert (shown.exit_code, shown.stdout) == (0, f"sandlot {version('sandlot')}\n")


def test_shell_completion():
    script = subprocess.run([SANDLOT, "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_SANDLOT_COMPLETE=complete_bash" in script.stdout
    env = {**os.environ, "_SANDLOT_COMPLETE": "complete_bash", "COMP_WORDS": "sandlot ex", "COMP_CWORD": "1"}
    assert subprocess.run([SANDLOT], env=env, capture_output=True, text=True, timeout=60).stdout.split() == ["exec"]
    env.update(COMP_WORDS="sandlot kill --a", COMP_CWORD="2")
    assert subprocess.run([SANDLOT], env=env, capture_output=True, text=True,
                          timeout=60).stdout.split() == ["--all", "--api-url", "--api-key"]
