"""sandlot.testing as a user meets it: pytest's own `pytester` runs a small user test file that
enables the plugin, in a subprocess; then nothing of its server may be left."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from host_resources import Footprint
from support import TEMPLATE_CACHE

pytest_plugins = ["pytester"]

USER_TESTS = '''
import json

import httpx
import sandlot
from e2b import Sandbox


def test_the_official_sdk_finds_the_server_in_its_environment(sandlot_env):
    sbx = Sandbox.create(timeout=60)
    try:
        assert sbx.commands.run("echo hello from $HOSTNAME").stdout == "hello from sandbox\\n"
    finally:
        sbx.kill()


def test_sandlots_own_sdk(sandlot_server):
    with sandlot.Sandbox.create(api_url=sandlot_server.url, api_key=sandlot_server.api_key) as sbx:
        sbx.files.write("/home/user/note.txt", "kept")
        assert sbx.files.read("/home/user/note.txt") == "kept"
        sbx.kill()


def test_the_api_key_is_required(sandlot_server):
    assert httpx.get(f"{sandlot_server.url}/v2/sandboxes").status_code == 401
    ok = httpx.get(f"{sandlot_server.url}/v2/sandboxes", headers={"X-API-KEY": sandlot_server.api_key})
    assert ok.status_code == 200


def test_one_server_for_the_session(sandlot_server, sandlot_env):
    assert sandlot_env is sandlot_server
    with open("server.json", "w") as f:  # for the test that ran this file
        json.dump({"url": sandlot_server.url, "home": str(sandlot_server.home)}, f)
'''


@pytest.fixture
def machine_home(tmp_path, monkeypatch):
    """The machine-wide state directory the plugin shares built templates with: here one whose
    templates are the test suites' cache, so nothing is built. The user's session makes its
    temporary files (the server's private state directory) in tmp_path/tmp, which must end empty."""
    home = tmp_path / "machine"
    home.mkdir()
    (home / "templates").symlink_to(TEMPLATE_CACHE)
    monkeypatch.setenv("SANDLOT_HOME", str(home))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    for key in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY", "E2B_DOMAIN", "SANDLOT_API_URL",
                "SANDLOT_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return home


def test_a_user_test_session_gets_a_server_and_leaves_nothing(pytester, machine_home):
    pytester.makeconftest('pytest_plugins = ["sandlot.testing"]\n')
    pytester.makeini("[pytest]\nsandlot_templates = base\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)

    server = json.loads((pytester.path / "server.json").read_text())
    home = Path(server["home"])
    assert home.parent == machine_home.parent / "tmp"
    assert list(home.parent.iterdir()) == []  # its private state directory went with it
    with pytest.raises(OSError):  # it no longer listens
        socket.create_connection(("127.0.0.1", int(server["url"].rsplit(":", 1)[1])), timeout=2).close()
    left = {kind: found for kind, found in Footprint(home).resources().items() if found}
    assert not left, left
    assert (machine_home / "templates").is_symlink()  # the shared templates are untouched


def test_an_unknown_template_is_a_clear_error(pytester, machine_home):
    pytester.makeconftest('pytest_plugins = ["sandlot.testing"]\n')
    pytester.makeini("[pytest]\nsandlot_templates = nosuchtemplate\n")
    pytester.makepyfile(test_user="def test_needs_a_server(sandlot_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown template 'nosuchtemplate'*"])
    assert list((machine_home.parent / "tmp").iterdir()) == []  # no state directory left
