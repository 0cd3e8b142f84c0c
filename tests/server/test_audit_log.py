"""AuditLog on its own (no server): what a request is recorded as, bounds, and the cost of a row on
the hot path (a command started through envd)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from starlette.routing import Mount, Route

from sandlot.server import audit as audit_mod
from sandlot.server.audit import AuditLog, classify
from sandlot.server.auth import Access, ApiKeys, requires
from sandlot.server.envd.routing import SandboxGate
from sandlot.server.request_info import RequestInfo
from sandlot.server.store import Store


async def _ok(scope, receive, send):
    pass


@pytest.fixture
def log(tmp_path):
    Store(tmp_path / "state.db").close()
    audit = AuditLog(tmp_path / "state.db", retention_days=1, max_rows=1000)
    yield audit
    audit.close()


def _routes(tmp_path):
    keys = ApiKeys(Store(tmp_path / "keys.db"), None)
    gate = SandboxGate(_ok, lookup=None, policy=None)
    control = requires(Access.API_KEY, [Route("/sandboxes/{sandbox_id}", _ok, methods=["GET", "DELETE"]),
                                        Route("/sandboxes/{sandbox_id}/new-thing", _ok, methods=["POST"]),
                                        Mount("/mcp", _ok)], keys, body=None)
    sandbox = requires(Access.SANDBOX, [Mount("/process.Process", gate), Route("/files", gate, methods=["GET", "POST"])],
                       keys, body=None)
    return {f"{r.path}": r for r in (*control, *sandbox)}


def _scope(route, method: str, path: str, query: bytes = b"", headers=()) -> dict:
    return {"type": "http", "method": method, "path": path, "route": route, "query_string": query,
            "headers": list(headers), "path_params": {}}


def test_what_each_request_is_recorded_as(tmp_path):
    r = _routes(tmp_path)
    sandbox, new, mcp = r["/sandboxes/{sandbox_id}"], r["/sandboxes/{sandbox_id}/new-thing"], r["/mcp"]
    start, files = r["/process.Process"], r["/files"]
    cases = [
        (_scope(sandbox, "DELETE", "/sandboxes/i1"), 204, "sandbox.kill"),
        (_scope(sandbox, "GET", "/sandboxes/i1"), 200, None),  # reads are not recorded...
        (_scope(sandbox, "GET", "/sandboxes/i1"), 404, "sandbox.get"),  # ...unless refused
        (_scope(sandbox, "GET", "/sandboxes/i1"), 401, "sandbox.get"),
        (_scope(new, "POST", "/sandboxes/i1/new-thing"), 200, "POST /sandboxes/{sandbox_id}/new-thing"),  # a later route
        (_scope(mcp, "POST", "/mcp"), 200, None), (_scope(mcp, "POST", "/mcp"), 401, "POST /mcp/*"),
        (_scope(start, "POST", "/process.Process/Start"), 200, "process.start"),
        (_scope(start, "POST", "/process.Process/List"), 200, None),
        (_scope(start, "POST", "/process.Process/List"), 401, "POST /process.Process/*"),
        (_scope(start, "POST", "/process.Process/Start"), 401, "process.start"),  # refused: still by name
        (_scope(start, "POST", "/process.Process/Start/../x"), 401, "POST /process.Process/*"),
        (_scope(files, "GET", "/files", b"path=/a&signature=v1_x"), 200, "file.read"),  # a signed URL used
        (_scope(files, "GET", "/files", b"path=/a", [(b"x-access-token", b"t")]), 200, None),
        (_scope(files, "POST", "/files", b"path=/a", [(b"x-access-token", b"t")]), 200, "file.write"),
        (_scope(None, "GET", "/nowhere"), 404, None),
    ]
    for scope, status, action in cases:
        assert classify(scope, status) == action, (scope["method"], scope["path"], status)


def test_rows_are_bounded_per_team_and_by_age(log):
    for i in range(1500):
        log.record("x", team="flood")
    for i in range(10):
        log.record("x", team="quiet")
    log.record("x", team="quiet", when=time.time() - 2 * 86400)  # past retention (1 day)
    log.flush()
    log.prune()
    assert len(log.query(team="flood", limit=5000)) == 1000  # the newest 1000 of the flood
    assert log.query(team="flood", limit=1)[0].id == 1500
    assert len(log.query(team="quiet", limit=5000)) == 10  # untouched by the flood, but the old row


def test_rows_waiting_for_the_writer_are_bounded(log, monkeypatch, caplog):
    monkeypatch.setattr(audit_mod, "MAX_PENDING", 5)
    log._closing = True  # the writer stops: as if the database did not keep up
    log._wake.set()
    log._thread.join(5)
    for _ in range(5000):
        log.record("x", team="t")
    assert (len(log._pending), log.dropped) == (5, 4995)
    assert "audit rows dropped" in caplog.text
    log._write()
    assert len(log.query(team="t")) == 5


def test_the_cost_of_recording_a_command_start(tmp_path, capsys):
    """The hot path: what Observe adds to each Process.Start, and what the writer thread spends on
    it later (off the event loop). Printed, and bounded generously."""
    Store(tmp_path / "state.db").close()
    log = AuditLog(tmp_path / "state.db", retention_days=1, max_rows=10**6)
    log._closing = True  # the writer stops, to time the two halves apart
    log._wake.set()
    log._thread.join(5)
    start = _routes(tmp_path)["/process.Process"]
    scope = _scope(start, "POST", "/process.Process/Start",
                   headers=[(b"x-access-token", b"t"), (b"e2b-sandbox-id", b"i1"), (b"content-type", b"x")])
    info = RequestInfo(sandbox_id="i1", team="t")
    n = 20_000
    began = time.perf_counter()
    for _ in range(n):
        log.request(scope, info, 200, time.time())
    queued = (time.perf_counter() - began) / n
    began = time.perf_counter()
    while log._pending:
        log._write()  # batches of up to 10,000 rows, one transaction each
    written = (time.perf_counter() - began) / n
    with capsys.disabled():
        print(f"\naudit cost per command start: {queued * 1e6:.1f} us on the request path (the event loop), "
              f"{written * 1e6:.1f} us in the writer thread")
    assert queued < 100e-6 and written < 200e-6
    assert len(log.query(team="t", limit=n + 1)) == n
    log.close()
