"""The Connect wire format as E2B clients see it (docs/e2b.md §3.2): envelopes, end frames, keepalives."""

from __future__ import annotations

import json
import struct

import httpx

HEADERS = {"E2b-Sandbox-Id": "sbxmain", "X-Access-Token": "token-main", "Connect-Protocol-Version": "1",
           "Content-Type": "application/connect+json"}


def envelope(message: dict) -> bytes:
    payload = json.dumps(message).encode()
    return struct.pack(">BI", 0, len(payload)) + payload


def frames(body: bytes) -> list[tuple[int, dict]]:
    out = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        out.append((flags, json.loads(body[5:5 + length])))
        body = body[5 + length:]
    return out


def test_start_stream_framing_and_keepalives(envd, sandbox):
    # 1 s: the shortest interval the server keeps (envd takes whole seconds; 1e-7 spun a core)
    request = {"process": {"cmd": "/bin/bash", "args": ["-c", "sleep 2.5; echo done"]}, "stdin": False}
    r = httpx.post(f"{envd.url}/process.Process/Start", content=envelope(request),
                   headers={**HEADERS, "Keepalive-Ping-Interval": "1", "Connect-Timeout-Ms": "10000"}, timeout=20)
    assert r.status_code == 200 and r.headers["content-type"] == "application/connect+json"
    got = frames(r.content)
    events = [message["event"] for flags, message in got[:-1]]
    assert list(events[0]) == ["start"] and events[0]["start"]["pid"] > 0
    assert sum("keepalive" in e for e in events) >= 2
    assert {"data": {"stdout": "ZG9uZQo="}} in events
    assert events[-1] == {"end": {"exited": True, "status": "exit status 0"}}
    assert got[-1] == (2, {})


def test_stream_error_is_an_end_frame(envd, sandbox):
    r = httpx.post(f"{envd.url}/process.Process/Connect", content=envelope({"process": {"pid": 999999}}),
                   headers=HEADERS)
    assert r.status_code == 200
    [(flags, end)] = frames(r.content)
    assert flags == 2 and end["error"]["code"] == "not_found"


def test_unary_json(envd, sandbox):
    r = httpx.post(f"{envd.url}/filesystem.Filesystem/Stat", json={"path": "/"},
                   headers={**HEADERS, "Content-Type": "application/json"})
    assert r.status_code == 200
    entry = r.json()["entry"]
    assert (entry["type"], entry["path"], entry["mode"]) == ("FILE_TYPE_DIRECTORY", "/", 0o755)
    assert "isSymlink" not in entry and entry["modifiedTime"].endswith("Z")
