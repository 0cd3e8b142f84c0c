"""Builds show their progress: a bar when a terminal waits (first start), log lines when a running
server builds on first use."""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
from pathlib import Path

import httpx
from rich.console import Console
from support import start_server

from sandlot.templates import TemplateStore, logged_progress
from sandlot.templates.progress import build_in_view


def test_first_use_builds_in_view_then_is_cached(needs_root, tmp_path):
    store = TemplateStore(tmp_path)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    build_in_view(store, "host", console)
    assert store.is_built("host")
    assert "template host" in out.getvalue()  # the bar was drawn
    out.truncate(0)
    build_in_view(store, "host", console)  # cached: nothing to build, nothing drawn
    assert out.getvalue() == ""


def test_logged_progress_lines_are_rate_limited(caplog):
    logger = logging.getLogger("sandlot.test-progress")
    report = logged_progress("t", logger, every=60)
    with caplog.at_level(logging.INFO, logger=logger.name):
        report(0, 4, "step one")
        report(1, 4, "step one")  # same step, too soon: no line
        report(2, 4, "step two")
    assert [r.getMessage() for r in caplog.records] == ["building template t: 0% step one",
                                                        "building template t: 50% step two"]


def test_a_server_started_without_its_default_template_builds_it_first(needs_root):
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-progress-"))
    (home / "templates").mkdir()  # not the shared cache: this server builds `host` itself
    # its log is no terminal: progress comes as log lines
    srv = start_server(home, pool_size=1,
                       extra_env={"SANDLOT_POOL_TEMPLATES": "host", "SANDLOT_DEFAULT_TEMPLATE": "host"})
    try:
        log = srv.log.read_text()
        assert "building template host" in log and log.index("building template host") < log.index("listening")
        assert TemplateStore(home).is_built("host")
        r = httpx.post(f"{srv.url}/v2/sandboxes", json={"templateID": "host", "timeout": 30},
                       headers={"X-API-KEY": srv.api_key}, timeout=60)
        assert r.status_code == 201, r.text
    finally:
        srv.stop()
        shutil.rmtree(home, ignore_errors=True)
