"""Server settings (server/config.py): read once from flags, the environment and a TOML file, each
bad value refused with a message naming it, every setting documented and used."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from sandlot.server.config import Config, ConfigError
from support import REPO, server_cmd

DOC = REPO / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SANDLOT_"):
            monkeypatch.delenv(name)


def test_defaults_come_from_one_place():
    config = Config.from_env()
    assert (config.host, config.port, config.pool_size, config.default_template) == ("127.0.0.1", 3000, 2, "base")
    assert config.max_upload_bytes == 1 << 30 and config.kill_on_shutdown


def test_flags_override_the_environment_which_overrides_the_file(tmp_path, monkeypatch):
    file = tmp_path / "sandlot.toml"
    file.write_text('pool_size = 7\nport = 4000\npool_templates = ["base"]\nlog_format = "json"\n')
    monkeypatch.setenv("SANDLOT_PORT", "5000")
    config = Config.from_env(file, pool_size=None)  # None: the flag was not given
    assert (config.pool_size, config.port, config.pool_templates, config.log_format) == (7, 5000, ("base",), "json")
    assert Config.from_env(file, pool_size=1).pool_size == 1
    monkeypatch.setenv("SANDLOT_CONFIG", str(file))  # the file named by the environment
    assert Config.from_env().pool_size == 7


def test_egress_is_on_request_unless_turned_off(monkeypatch):
    assert Config.from_env().egress == "on-request"
    monkeypatch.setenv("SANDLOT_EGRESS", " OFF")
    assert Config.from_env().egress == "off"


def test_pool_templates_are_comma_separated(monkeypatch):
    monkeypatch.setenv("SANDLOT_POOL_TEMPLATES", " base, code-interpreter ,")
    assert Config.from_env().pool_templates == ("base", "code-interpreter")
    monkeypatch.setenv("SANDLOT_POOL_TEMPLATES", "")
    assert Config.from_env().pool_templates == ()


@pytest.mark.parametrize("name,value", [
    ("SANDLOT_POOL_SIZE", "abc"), ("SANDLOT_POOL_SIZE", "-1"), ("SANDLOT_PORT", "70000"),
    ("SANDLOT_MAX_JSON_BYTES", "1_000"), ("SANDLOT_MAX_OUTPUT_BYTES", "²"), ("SANDLOT_LOG_FORMAT", "xml"),
    ("SANDLOT_HEADER_TIMEOUT", "nan"), ("SANDLOT_KEEP_SANDBOXES", "maybe"), ("SANDLOT_METRICS_AUTH", "open"),
    ("SANDLOT_EGRESS", "on"),
])
def test_a_bad_value_names_the_variable_and_the_value(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        Config.from_env()
    assert name in raised.value.message and repr(value) in raised.value.message, raised.value.message
    with pytest.raises(ConfigError):
        Config()  # built directly: the same check and message


def test_bad_files(tmp_path):
    file = tmp_path / "sandlot.toml"
    file.write_text('pool_sise = 3\nport = "x"\n')
    with pytest.raises(ConfigError) as raised:
        Config.from_env(file)
    message = raised.value.message
    assert f"unknown setting 'pool_sise' in {file}" in message and f"port in {file}" in message, message
    file.write_text("pool_size = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_env(file)
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_env(tmp_path / "missing.toml")


def test_unknown_variables_are_reported(monkeypatch):
    monkeypatch.setenv("SANDLOT_POOL_SZE", "1")
    monkeypatch.setenv("SANDLOT_API_URL", "http://x")  # the client's
    assert Config.unknown_env() == ["SANDLOT_POOL_SZE"]


def test_serve_stops_on_a_bad_setting_with_the_message(tmp_path):
    env = {**os.environ, "SANDLOT_HOME": str(tmp_path), "SANDLOT_POOL_SIZE": "abc"}
    run = subprocess.run([*server_cmd(), "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run
    assert "SANDLOT_POOL_SIZE" in run.stderr and "'abc'" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_every_setting_is_documented_and_every_documented_one_exists():
    documented = set(re.findall(r"`(SANDLOT_[A-Z_]+)`", DOC.read_text()))
    settings = {"SANDLOT_" + name.upper() for name in Config.model_fields}
    assert settings <= documented, f"undocumented: {settings - documented}"
    client_side = {"SANDLOT_API_URL", "SANDLOT_EMBEDDED_START_TIMEOUT", "SANDLOT_CONFIG", "SANDLOT_CA_FILE"}
    assert documented <= settings | client_side, f"documented but no setting: {documented - settings - client_side}"


def test_every_setting_is_used():
    """No dead fields: each setting is read somewhere outside its definition."""
    src = REPO / "src" / "sandlot"
    code = "\n".join(p.read_text() for p in src.rglob("*.py") if p.name != "config.py")
    unused = [name for name in Config.model_fields if not re.search(rf"\.{name}\b", code)]
    assert not unused, unused


def test_server_modules_read_no_environment_themselves():
    server = REPO / "src" / "sandlot" / "server"
    readers = [p for p in server.rglob("*.py") if re.search(r"os\.environ|getenv", p.read_text()) and p.name != "config.py"]
    assert not readers, f"server modules reading the environment themselves: {readers}"


def test_default_home_is_the_settings_home(monkeypatch, tmp_path):
    from sandlot.server.config import default_home

    monkeypatch.setenv("SANDLOT_HOME", str(tmp_path))
    assert default_home() == tmp_path == Path(Config.from_env().home)
