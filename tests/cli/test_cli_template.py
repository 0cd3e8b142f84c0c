"""`sandlot template build|list` on a state directory."""

from __future__ import annotations

from typer.testing import CliRunner

from sandlot.cli.main import app
from support import TEMPLATE_CACHE

runner = CliRunner()


def test_list_shows_the_shared_base(tmp_path):
    TEMPLATE_CACHE.mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates").symlink_to(TEMPLATE_CACHE)
    result = runner.invoke(app, ["template", "list", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "base" in result.stdout and "host" in result.stdout


def test_build_then_list(tmp_path):
    result = runner.invoke(app, ["template", "build", "host", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("built host")
    listed = runner.invoke(app, ["template", "list", "--home", str(tmp_path)])
    host = next(line for line in listed.stdout.splitlines() if line.strip().startswith("host"))
    assert "built" in host and "not built" not in host
    rootfs = tmp_path / "templates" / "host" / "rootfs"
    first = rootfs.stat().st_ino
    kept = runner.invoke(app, ["template", "build", "host", "--if-stale", "--home", str(tmp_path)])
    assert kept.exit_code == 0 and "up to date" in kept.stdout, kept.output
    assert rootfs.stat().st_ino == first  # up to date: left as it was
    again = runner.invoke(app, ["template", "build", "host", "--home", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert rootfs.stat().st_ino != first  # an explicit build rebuilds


def test_unknown_template(tmp_path):
    result = runner.invoke(app, ["template", "build", "nope", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "unknown template" in result.stderr
