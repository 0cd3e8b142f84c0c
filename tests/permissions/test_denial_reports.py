"""What the permission filesystem's daemon reports of denied operations (permfs/workspace.py,
`Workspace.deny`; permfs/reports.py), on its own: one report per denial up to the window's budget,
then one count when the window ends; nothing when audit is off; a server that is absent, slow or
restarting never makes the daemon wait, and what could not be sent is counted."""

from __future__ import annotations

import json
import os
import socket

import pytest

from sandlot.permfs import workspace as W


class Listener:
    """The server's end: a listening unix stream socket, read line by line."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen()
        self.conn = None
        self.pending = b""

    def getsockname(self) -> str:
        return self.path

    def lines(self) -> list[dict]:
        if self.conn is None:
            self.sock.settimeout(1)
            self.conn, _ = self.sock.accept()
            self.conn.setblocking(False)
        while True:
            try:
                chunk = self.conn.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.pending += chunk
        *done, self.pending = self.pending.split(b"\n")
        return [json.loads(line) for line in done]

    def close(self):
        for sock in (self.conn, self.sock):
            if sock is not None:
                sock.close()


@pytest.fixture
def server_socket(tmp_path):
    listener = Listener(tmp_path / "denials.sock")
    yield listener
    listener.close()


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(W.time, "monotonic", lambda: now[0])
    return now


def received(listener: Listener) -> list[dict]:
    return listener.lines()


def workspace(tmp_path, report: str | None, audit: bool = True) -> W.Workspace:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return W.Workspace("sbx1", str(root), 100000, 65536, (101000, 101000), [], report, audit)


def test_denials_are_reported_up_to_a_budget_then_counted(tmp_path, server_socket, clock):
    ws = workspace(tmp_path, server_socket.getsockname())
    for i in range(W.DENIALS_PER_WINDOW + 7):
        ws.deny("lookup", f"/.env{i}", os.getpid())
    reports = received(server_socket)
    assert len(reports) == W.DENIALS_PER_WINDOW
    assert reports[0]["sandbox"] == "sbx1" and (reports[0]["op"], reports[0]["path"]) == ("lookup", "/.env0")
    assert reports[0]["pid"] == os.getpid() and reports[0]["process"]  # not in a pid namespace here: the same
    ws.tick()
    assert received(server_socket) == []  # the window is not over
    clock[0] += W.DENIAL_WINDOW
    ws.tick()
    assert [r["more"] for r in received(server_socket)] == [7]
    ws.deny("open for writing", "/main.py", os.getpid())
    assert [r["path"] for r in received(server_socket)] == ["/main.py"]  # a new window's budget


def test_a_count_left_at_removal_is_reported(tmp_path, server_socket, clock):
    ws = workspace(tmp_path, server_socket.getsockname())
    for _ in range(W.DENIALS_PER_WINDOW + 2):
        ws.deny("lookup", "/x", os.getpid())
    received(server_socket)
    ws.close()
    assert [r["more"] for r in received(server_socket)] == [2]


def test_long_paths_are_cut(tmp_path, server_socket, clock):
    ws = workspace(tmp_path, server_socket.getsockname())
    ws.deny("lookup", "/" + "a" * 5000, os.getpid())
    assert len(received(server_socket)[0]["path"]) == W.MAX_REPORTED_PATH


def test_nothing_is_reported_with_audit_off(tmp_path, server_socket, clock):
    workspace(tmp_path, server_socket.getsockname(), audit=False).deny("lookup", "/.env", os.getpid())
    ws = workspace(tmp_path, server_socket.getsockname())
    ws.deny("lookup", "/seen", os.getpid())
    assert [r["path"] for r in received(server_socket)] == ["/seen"]


def test_no_server_a_slow_one_and_a_restarted_one(tmp_path, clock):
    path = tmp_path / "denials.sock"
    ws = workspace(tmp_path, str(path))
    ws.deny("lookup", "/nobody-listens", os.getpid())  # ENOENT: dropped at once, no error
    slow = Listener(path)
    # a server that does not read: the kernel's buffer fills, then the daemon's; nothing blocks,
    # and what fits nowhere is counted
    big = "/" + "b" * 1000
    for _ in range(4000):
        clock[0] += W.DENIAL_WINDOW
        ws.deny("lookup", big, os.getpid())
    assert ws._dropped > 0
    lines = received(slow)
    assert lines and all(r["path"] == big for r in lines if "path" in r)
    # the server restarts: what the daemon still holds goes to the new one, from a whole line on
    # (every line parses), then the next reports
    slow.close()
    os.unlink(path)
    fresh = Listener(path)
    clock[0] += W.DENIAL_WINDOW
    ws.deny("lookup", "/after-restart", os.getpid())
    got: list[dict] = []
    for _ in range(1000):
        got += received(fresh)
        if "/after-restart" in [r.get("path") for r in got]:
            break
        ws.tick()
    assert got[-1]["path"] == "/after-restart" and all(r["sandbox"] == "sbx1" for r in got)
    fresh.close()
