"""`sandlot serve --install-service`: a systemd unit, written where it is told (never the real /etc
here), that systemd itself accepts, running this sandlot with these settings and no secret."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from support import server_cmd


def _install(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANDLOT_")}
    return subprocess.run([*server_cmd(), "serve", "--install-service", *args], capture_output=True, text=True,
                          timeout=60, env={**clean, **env}, cwd=tmp_path)


def test_writes_a_unit_systemd_accepts(tmp_path):
    unit = tmp_path / "units" / "sandlot.service"
    settings = tmp_path / "sandlot.toml"
    settings.write_text("pool_size = 1\n")
    run = _install(tmp_path, "--unit-path", str(unit), "--port", "3999", "--home", str(tmp_path / "my home"),
                   "--config", str(settings), SANDLOT_LOG_FORMAT="json", SANDLOT_API_KEY="a-secret-key")
    assert run.returncode == 0, run.stderr
    text = unit.read_text()
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={os.path.realpath(server_cmd()[0])} serve ")
    assert f'--port 3999 --home "{tmp_path}/my home" --config {settings}' in exec_start, exec_start
    assert "Environment=SANDLOT_LOG_FORMAT=json" in text
    assert "a-secret-key" not in text  # a unit file is world-readable
    assert "KillMode=process" in text  # the server stops its sandboxes itself, or keeps them for adoption
    assert not list(unit.parent.glob(".*")), "a temporary file was left"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_a_bad_setting_writes_nothing(tmp_path):
    unit = tmp_path / "sandlot.service"
    run = _install(tmp_path, "--unit-path", str(unit), SANDLOT_POOL_SIZE="many")
    assert run.returncode == 2 and "SANDLOT_POOL_SIZE" in run.stderr
    assert not unit.exists()


def test_flags_and_environment_reach_the_unit(tmp_path):
    unit = tmp_path / "sandlot.service"
    assert _install(tmp_path, "--unit-path", str(unit), "--keep-sandboxes").returncode == 0
    assert "--keep-sandboxes" in unit.read_text()
    assert _install(tmp_path, "--unit-path", str(unit), SANDLOT_KEEP_SANDBOXES="true").returncode == 0
    assert "--keep-sandboxes" in unit.read_text()
    assert _install(tmp_path, "--unit-path", str(unit)).returncode == 0
    assert "--keep-sandboxes" not in unit.read_text()
