"""`sandlot codebase create|ls|show|upload|files|download|rm` against a real server."""

from __future__ import annotations

import json
import os

import pytest

from sandlot import Sandbox

if os.geteuid() != 0:
    pytest.skip("codebases are mounted by a server run as root", allow_module_level=True)


def test_codebase_commands(cli, server, tmp_path):
    (tmp_path / "proj" / "src").mkdir(parents=True)
    (tmp_path / "proj" / "src" / "main.py").write_text("print('cli')\n")
    (tmp_path / "proj" / ".git").mkdir()
    (tmp_path / "proj" / ".git" / "HEAD").write_text("x")
    made = cli("codebase", "create", "cli-demo", "--from", str(tmp_path / "proj"), "--exclude", ".git")
    assert made.exit_code == 0, made.output
    cid = made.stdout.strip()
    (tmp_path / "notes.txt").write_text("notes")
    assert cli("codebase", "upload", cid, str(tmp_path / "notes.txt"), "--to", "/docs/").exit_code == 0
    listed = cli("codebase", "files", cid)
    assert listed.stdout.split() == ["/docs/", "/docs/notes.txt", "/src/", "/src/main.py"]
    shown = json.loads(cli("codebase", "show", cid).stdout)
    assert shown["name"] == "cli-demo" and shown["files"] == 2
    listed = json.loads(cli("codebase", "ls", "--json").stdout)
    assert {"id": cid, "name": "cli-demo", "team": "default", "version": 1, "files": 2} == {
        k: v for c in listed if c["id"] == cid for k, v in c.items() if k not in ("size", "created_at")}
    assert cid in cli("codebase", "ls", "-q").stdout.split()
    assert json.loads(cli("codebase", "files", cid, "--json").stdout)[-1]["path"] == "/src/main.py"
    assert cli("codebase", "download", cid, str(tmp_path / "back")).exit_code == 0
    assert (tmp_path / "back" / "src" / "main.py").read_text() == "print('cli')\n"
    with Sandbox.create(codebase=cid, preset="read-only", api_url=server.url, api_key=server.api_key) as sandbox:
        assert sandbox.commands.run("python3 /workspace/src/main.py").stdout == "cli\n"
        busy = cli("codebase", "rm", cid)
        assert busy.exit_code == 1 and "mounted" in busy.output
    assert cli("codebase", "rm", cid).exit_code == 0
    missing = cli("codebase", "show", cid)
    assert missing.exit_code == 1 and "not found" in missing.output
