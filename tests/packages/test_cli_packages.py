"""`sandlot packages install|list|uninstall|is-installed` against a real server (typer's CliRunner, in-process)."""

from __future__ import annotations

import json

import pytest

from sandlot import Sandbox


@pytest.fixture
def sandbox(server):
    sbx = Sandbox.create(template="base", api_url=server.url, api_key=server.api_key)
    yield sbx
    sbx.kill()
    sbx.close()


def test_install_list_uninstall(cli, sandbox):
    sid = sandbox.sandbox_id
    installed = cli("packages", "install", sid, "tabulate", "six==1.16.0")
    assert installed.exit_code == 0, installed.output
    assert "installed six 1.16.0" in installed.stdout and "installed tabulate " in installed.stdout
    assert sandbox.commands.run("python3 -c 'import tabulate, six'").exit_code == 0

    listed = cli("packages", "list", sid, "--json")
    assert listed.exit_code == 0, listed.output
    assert {"name": "six", "version": "1.16.0"} in json.loads(listed.stdout)
    table = cli("packages", "list", sid)
    assert "tabulate" in table.stdout and "1.16.0" in table.stdout

    again = cli("packages", "install", sid, "six")
    assert again.exit_code == 0 and again.stdout == "" and "already satisfied" in again.stderr

    removed = cli("packages", "uninstall", sid, "tabulate", "six")
    assert removed.exit_code == 0, removed.output
    assert "uninstalled six 1.16.0" in removed.stdout and "uninstalled tabulate " in removed.stdout
    assert sandbox.commands.run("python3 -c 'import tabulate'", check=False).exit_code != 0


def test_install_requirements(cli, sandbox):
    sandbox.files.write("/home/user/requirements.txt", "six==1.16.0\n")
    result = cli("packages", "install", sandbox.sandbox_id, "-r", "/home/user/requirements.txt")
    assert result.exit_code == 0, result.output
    assert result.stdout == "installed six 1.16.0\n"


def test_errors_are_one_line(cli, sandbox):
    sid = sandbox.sandbox_id
    unknown = cli("packages", "install", sid, "sandlot-no-such-package-xyz")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error:")
    assert "No matching distribution" in unknown.stderr
    refused = cli("packages", "install", sid, "pkg @ file:///etc/passwd")
    assert refused.exit_code == 1 and "URLs are not allowed" in refused.stderr
    assert cli("packages", "install", sid).exit_code == 2  # neither names nor -r
    missing = cli("packages", "list", "nosuchsandbox")
    assert missing.exit_code == 1 and missing.stderr.startswith("error:")


def test_is_installed_exit_codes(cli, sandbox):
    sid = sandbox.sandbox_id
    missing = cli("packages", "is-installed", sid, "six")
    assert (missing.exit_code, missing.stdout) == (1, ""), missing.output
    assert "six is not installed" in missing.stderr
    assert cli("packages", "install", sid, "six==1.16.0").exit_code == 0
    found = cli("packages", "is-installed", sid, "SIX")  # PEP 503 names
    assert (found.exit_code, found.stdout) == (0, "") and "SIX is installed" in found.stderr, found.output
    assert cli("packages", "is-installed", sid, "pip").exit_code == 0
    assert cli("packages", "uninstall", sid, "six").exit_code == 0
    assert cli("packages", "is-installed", sid, "six").exit_code == 1
    # an error is neither answer
    error = cli("packages", "is-installed", "nosuchsandbox", "six")
    assert error.exit_code == 2 and error.stderr.startswith("error:"), error.output
    assert cli("packages", "is-installed", sid).exit_code == 2  # no name: a usage error


def test_install_upgrade(cli, sandbox):
    sid = sandbox.sandbox_id
    assert cli("packages", "install", sid, "six==1.16.0").stdout == "installed six 1.16.0\n"
    assert cli("packages", "install", sid, "six").stdout == ""  # 1.16.0 satisfies it
    upgraded = cli("packages", "install", sid, "six", "--upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    [line] = upgraded.stdout.splitlines()
    verb, name, version = line.split()
    assert (verb, name) == ("installed", "six") and version != "1.16.0", line
    ran = sandbox.commands.run("python3 -c 'import six; print(six.__version__)'")
    assert ran.stdout.strip() == version
    again = cli("packages", "install", sid, "-U", "six")
    assert (again.exit_code, again.stdout) == (0, "") and "already satisfied" in again.stderr
