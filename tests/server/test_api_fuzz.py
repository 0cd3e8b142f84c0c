"""The REST API against requests generated from its own OpenAPI document by schemathesis (its
command line: the coverage phase's boundary values and nulls, then fuzzing in and out of the schema,
then stateful chains of calls): whatever a client sends, the server answers it, never with a 500 (an
error it did not handle) and never with a traceback in its log. The other 5xx are answers the API
gives on purpose: 502 for a sandbox that is not running (a paused one), as E2B's proxy does; 501 for a
fork it cannot make (a sandbox with a workspace).

A real server on loopback with a key of its own. The seed is fixed: a run is repeatable, and a
failure names the request (as curl) that caused it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import leftovers, start_server, tracebacks

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def fuzzed_server():
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-fuzz-"))
    srv = start_server(home, pool_size=0)
    try:
        yield srv
    finally:
        srv.stop()
        # what the fuzzing made and kept by design stays on disk (snapshots, paused sandboxes and the
        # layers they hold): mounts and network are what a stopped server must leave none of
        kept = (home / "layers", home / "sandboxes")
        left = [p for p in leftovers(home) if Path(p).parent not in kept]
        shutil.rmtree(home, ignore_errors=True)
    assert not left, f"the server left sandbox resources behind: {left}"


@pytest.mark.timeout(900)
def test_no_request_is_a_500(fuzzed_server, tmp_path):
    run = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{fuzzed_server.url}/openapi.json", "--checks", "not_a_server_error",
         "-H", f"X-API-Key: {fuzzed_server.api_key}", "--max-examples", "15", "--seed", "1",
         "--request-timeout", "60", "--no-color"],
        capture_output=True, text=True, timeout=840, cwd=tmp_path)
    report = run.stdout
    assert "API Operations:" in report and "Tested: " in report, run.stdout[-3000:] + run.stderr[-3000:]
    tested = int(re.search(r"Tested: (\d+)", report)[1])
    assert tested > 50, f"schemathesis tested only {tested} operations"
    errors = [block for block in report.split("\n\n") if re.search(r"^\[500\]", block.strip())]
    found = tracebacks(fuzzed_server.log.read_text())
    assert not errors and not found, "\n".join(errors) + "\n" + "\n".join(found) + "\n" + report[-6000:]
