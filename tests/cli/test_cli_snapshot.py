"""`sandlot snapshot ...` against a real server (typer's CliRunner, in-process)."""

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

    def invoke(*args: str):
        return runner.invoke(app, ["snapshot", *args], env=env)

    return invoke


def test_create_list_fork_export_delete(cli, server):
    conn = {"api_url": server.url, "api_key": server.api_key}
    sbx = Sandbox.create(timeout=120, **conn)
    name = "cli" + uuid.uuid4().hex[:8]
    try:
        sbx.files.write("/home/user/cli.txt", "from the cli")
        made = cli("create", sbx.sandbox_id, "--name", name)
        assert made.exit_code == 0, made.output
        assert made.stdout.strip() == f"{name}:default"
        listed = cli("list", "--sandbox", sbx.sandbox_id)
        assert f"{name}:default" in listed.stdout
        assert json.loads(cli("list", "--sandbox", sbx.sandbox_id, "--json").stdout) == [
            {"snapshot_id": f"{name}:default", "names": [f"{name}:default"]}]
        assert cli("list", "-q", "--name", name).stdout == f"{name}:default\n"
        forked = cli("fork", sbx.sandbox_id, "--count", "2", "--timeout", "60")
        assert forked.exit_code == 0, forked.output
        kids = forked.stdout.split()
        assert len(kids) == 2
        for kid in kids:
            assert Sandbox.connect(kid, **conn).files.read("/home/user/cli.txt") == "from the cli"
            Sandbox.kill(kid, **conn)
        exported = cli("export", name)
        assert exported.exit_code == 0 and "layers uploaded" in " ".join(exported.stdout.split()), exported.output
        again = json.loads(cli("export", name, "--json").stdout)
        assert again["uploaded"] == 0 and again["layers"] >= 1  # each layer goes to storage once
        assert cli("delete", name).exit_code == 0
        gone = cli("delete", name)
        assert (gone.exit_code, gone.stderr) == (1, f'error: snapshot "{name}" not found\n')
        bad = cli("create", "inotasandbox0000000")
        assert (bad.exit_code, bad.stderr) == (1, 'error: sandbox "inotasandbox0000000" not found\n')
    finally:
        sbx.kill()
