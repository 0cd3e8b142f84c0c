"""What a sandbox's root user can make its agent answer, and how the front door takes it: the
agent inside is the sandbox's, so every reply may be forged. A malformed reply is a clear error
(the sandbox's agent broke the protocol: 502, as for an agent that went), never a 500, a traceback
in the server's log or a body that looks whole when it is not.

The forged agent is a stand-in on a real unix socket; the front door is the real one, served by
uvicorn with the server's own HTTP protocol (httptools), and requests come over real HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from sandlot._exceptions import SandboxNotRunning
from sandlot.protocol import wire
from sandlot.server.agent_client import AgentClient
from sandlot.server.envd import envd_app
from sandlot.server.envd.routing import Closing
from support import wait_until

ENTRY = {"name": "f.bin", "type": "file", "path": "/home/user/f.bin", "size": 10, "mode": 0o644,
         "permissions": "-rw-r--r--", "owner": "user", "group": "user", "mtime": 1.0, "symlink_target": None,
         "metadata": {}}


@dataclass
class _Sandbox:
    id: str
    agent: AgentClient
    access_token: None = None
    default_user: str = "user"
    closed: Closing = field(default_factory=Closing)
    output_rate: None = None


class _Lookup:
    def __init__(self, sandbox):
        self.sandbox = sandbox

    def get_running(self, sandbox_id):
        return self.sandbox if sandbox_id == self.sandbox.id else None

    def running(self):
        return [self.sandbox]


@dataclass
class Forged:
    """The front door's URL; set `answer(request) -> frames` for the agent's next replies."""

    url: str
    answer: Callable[[dict], list[bytes]] = lambda request: [wire.error_frame("internal", "no answer set")]


@pytest.fixture
def forged(tmp_path) -> Iterator[Forged]:
    path = str(tmp_path / "agent.sock")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    forged = Forged(f"http://127.0.0.1:{sock.getsockname()[1]}")

    async def serve(reader, writer):
        try:
            head = await reader.readexactly(wire.HEADER_SIZE)
            request = wire.decode_json(await reader.readexactly(int.from_bytes(head[1:], "big")))
            for frame in forged.answer(request):
                writer.write(frame)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    app = _named(envd_app(_Lookup(_Sandbox("sbxforged", AgentClient(path)))), "sbxforged")
    server = uvicorn.Server(uvicorn.Config(app, http="httptools", log_config=None, lifespan="off"))
    loop = asyncio.new_event_loop()

    async def main():
        agent = await asyncio.start_unix_server(serve, path)
        async with agent:
            await server.serve(sockets=[sock])

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        thread.start()
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        yield forged
        server.should_exit = True
        thread.join(10)
        loop.close()
        gc.collect()  # a task that failed unawaited logs its traceback when collected
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.seen, errors.seen


def _named(app, sandbox_id: str):
    """Every request names the sandbox (E2b-Sandbox-Id), as the SDKs send it: this one has no
    access token, and a sandbox without one is never inferred (envd/routing.py)."""
    async def routed(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "headers": [*scope["headers"], (b"e2b-sandbox-id", sandbox_id.encode())]}
        await app(scope, receive, send)
    return routed


class _Errors(logging.Handler):
    """The server's errors with a traceback (uvicorn logs an exception in the app so; a body it
    cuts short, without one), as the server tests' log check (support.tracebacks)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record):
        if record.exc_info:
            self.seen.append(f"{record.getMessage()} {record.exc_info[1]!r}")


def _read_reply(entry, length, *chunks: bytes) -> Callable[[dict], list[bytes]]:
    def answer(request):
        assert request["op"] == "files.read"
        return [wire.encode_json({"entry": entry, "length": length}),
                *(wire.encode(wire.DATA, c) for c in chunks), wire.encode(wire.END, b"")]
    return answer


@pytest.mark.parametrize("entry", [
    None, "f.bin", {}, {**ENTRY, "size": "10"}, {**ENTRY, "size": -5}, {**ENTRY, "name": 7},
    {**ENTRY, "size": True}, {**ENTRY, "size": 1.5},
])
@pytest.mark.parametrize("range_", [None, "bytes=0-3"])
def test_a_forged_entry_is_a_clear_error(forged, entry, range_):
    forged.answer = _read_reply(entry, 10, b"0123456789")
    r = httpx.get(f"{forged.url}/files", params={"path": "f.bin"}, headers={"Range": range_} if range_ else {})
    assert r.status_code == 502, (r.status_code, r.text)


@pytest.mark.parametrize("accept", ["identity", "gzip"])
def test_more_bytes_than_the_agent_promised_cut_the_body_short(forged, accept):
    """The agent promised 10 bytes and sends 20: the body is cut off (the client sees an incomplete
    download), with no traceback in the server's log."""
    forged.answer = _read_reply(ENTRY, 10, b"0123456789", b"abcdefghij")
    with httpx.Client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(f"{forged.url}/files", params={"path": "f.bin"}, headers={"Accept-Encoding": accept})
        forged.answer = _read_reply(ENTRY, 10, b"0123456789")
        assert http.get(f"{forged.url}/files", params={"path": "f.bin"}).content == b"0123456789"


@pytest.mark.parametrize("range_", [None, "bytes=5-50"])
def test_fewer_bytes_than_promised_cut_the_body_short(forged, range_):
    """The agent promised 100 bytes (its length, or the size a range is cut from) and ends after
    10: the body is cut off, no traceback."""
    forged.answer = _read_reply({**ENTRY, "size": 100}, 100, b"0123456789")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{forged.url}/files", params={"path": "f.bin"}, headers={"Range": range_} if range_ else {})


def _rpc(forged: Forged, method: str, body: dict) -> httpx.Response:
    return httpx.post(f"{forged.url}/filesystem.Filesystem/{method}", json=body,
                      headers={"Connect-Protocol-Version": "1"})


@pytest.mark.parametrize("op, method, reply", [
    ("files.stat", "Stat", {"entry": {**ENTRY, "mtime": float("inf")}}),
    ("files.stat", "Stat", {"entry": {**ENTRY, "size": 2**70}}),
    ("files.stat", "Stat", {"entry": {**ENTRY, "metadata": {"k": 1}}}),
    ("files.stat", "Stat", {}),
    ("files.list", "ListDir", {"entries": {"a": ENTRY}}),
    ("files.list", "ListDir", {"entries": [ENTRY, {**ENTRY, "owner": None}]}),
])
def test_a_forged_entry_is_an_unavailable_sandbox_on_the_rpcs(forged, op, method, reply):
    forged.answer = lambda request: [wire.encode_json(reply if request["op"] == op else {})]
    r = _rpc(forged, method, {"path": "/home/user"})
    assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text


def test_a_forged_watch_event_ends_the_watcher(forged):
    def answer(request):
        if request["op"] == "files.stat":
            return [wire.encode_json({"entry": {**ENTRY, "type": "dir"}})]
        return [wire.encode_json({"start": {}}), wire.encode_json({"event": "not an event"})]

    forged.answer = answer
    watcher = _rpc(forged, "CreateWatcher", {"path": "/home/user"}).json()["watcherId"]
    # its stream broke: it went (the break is read by the watcher's task, after the create answered)
    r = wait_until(lambda: (r := _rpc(forged, "GetWatcherEvents", {"watcherId": watcher})).status_code != 200 and r,
                   timeout=20, message="the watcher to go")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


def test_a_forged_name_with_a_lone_surrogate_is_listed(forged):
    forged.answer = lambda request: [wire.encode_json({"entries": [{**ENTRY, "name": "a\ud800", "owner": "\udcff"}]})]
    r = _rpc(forged, "ListDir", {"path": "/home/user"})
    assert r.status_code == 200 and r.json()["entries"][0]["name"].startswith("a\ufffd"), r.text


def test_a_forged_error_message_with_a_lone_surrogate_is_relayed(forged):
    """An agent's error message is relayed as it is: one that cannot be UTF-8 (forged, or naming a
    path that is not) comes with U+FFFD, not as a 500."""
    forged.answer = lambda request: [wire.error_frame("not_found", "no \udcff here")]
    r = httpx.get(f"{forged.url}/files", params={"path": "f.bin"})
    assert r.status_code == 404 and r.json()["message"] == "no \ufffd here", (r.status_code, r.text)


def test_a_forged_process_list_with_lone_surrogates_is_listed(forged):
    forged.answer = lambda request: [wire.encode_json({"processes": [
        {"pid": 1, "cmd": "\udcff", "args": ["a\ud800"], "envs": {"\udcff": "\udcff"}, "cwd": "\udcff",
         "tag": "\udcff"}]})]
    r = httpx.post(f"{forged.url}/process.Process/List", json={}, headers={"Connect-Protocol-Version": "1"})
    assert r.status_code == 200, r.text
    [process] = r.json()["processes"]
    assert process["config"]["cmd"] == "\ufffd" and process["config"]["args"][0].startswith("a\ufffd"), process
    assert process["tag"] == "\ufffd" and process["config"]["envs"] == {"\ufffd": "\ufffd"}, process


def _connect_stream(forged: Forged, method: str, body: dict) -> list[tuple[int, dict]]:
    """A Connect server stream over real HTTP: its (flags, message) envelopes."""
    payload = json.dumps(body).encode()
    envelope = b"\0" + len(payload).to_bytes(4, "big") + payload
    r = httpx.post(f"{forged.url}/process.Process/{method}", content=envelope,
                   headers={"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"})
    assert r.status_code == 200, r.text
    data, envelopes = r.content, []
    while data:
        size = int.from_bytes(data[1:5], "big")
        envelopes.append((data[0], json.loads(data[5:5 + size])))
        data = data[5 + size:]
    return envelopes


@pytest.mark.parametrize("event", [
    {"start": {"pid": "1"}}, {"start": {}}, {"start": {"pid": 2**40}}, {"end": None},
    {"end": {"exit_code": 0, "exited": True}},  # no status
    {"end": {"exit_code": "0", "exited": True, "status": "exit status 0"}},
    {"end": {"exit_code": 2**40, "exited": True, "status": "exit status 0"}},
    {"start": {"pid": 1}, "end": {"exit_code": 0, "exited": True, "status": "exit status 0"}},
    {"stdout": "aGk="}, {},
])
def test_a_forged_process_event_ends_the_stream_as_an_unavailable_sandbox(forged, event):
    first = {"start": {"pid": 7}} if "start" not in event else {"keepalive": {}}
    forged.answer = lambda request: [wire.encode_json(first), wire.encode_json(event)]
    envelopes = _connect_stream(forged, "Start", {"process": {"cmd": "true"}})
    flags, end = envelopes[-1]
    assert flags == 2 and end["error"]["code"] == "unavailable", envelopes
    assert "broke the protocol" in end["error"]["message"]


def test_a_well_formed_process_stream_passes(forged):
    """The check above refuses forgeries only: the agent's own events go through."""
    forged.answer = lambda request: [
        wire.encode_json({"start": {"pid": 7}}), wire.encode(wire.STDOUT, b"hi\n"),
        wire.encode_json({"keepalive": {}}),
        wire.encode_json({"end": {"exit_code": 1, "exited": True, "status": "exit status 1",
                                  "error": "exit status 1"}})]
    envelopes = _connect_stream(forged, "Start", {"process": {"cmd": "true"}})
    events = [m["event"] for flags, m in envelopes if flags == 0]
    assert events[0] == {"start": {"pid": 7}} and events[-1]["end"]["exitCode"] == 1, envelopes
    assert envelopes[-1] == (2, {}), envelopes



def test_a_forged_end_status_with_a_lone_surrogate_passes(forged):
    forged.answer = lambda request: [
        wire.encode_json({"start": {"pid": 7}}),
        wire.encode_json({"end": {"exit_code": 1, "exited": True, "status": "\udcff", "error": "\udcff"}})]
    envelopes = _connect_stream(forged, "Start", {"process": {"cmd": "true"}})
    end = [m["event"] for flags, m in envelopes if flags == 0][-1]["end"]
    assert (end["status"], end["error"]) == ("\ufffd", "\ufffd") and envelopes[-1] == (2, {}), envelopes


@pytest.mark.parametrize("reply", [
    {}, {"processes": {"pid": 1}}, {"processes": [{"pid": 1, "cmd": "sh", "args": ["-c", 1], "envs": {}}]},
    {"processes": [{"pid": 1, "cmd": "sh", "args": [], "envs": {"A": None}}]},
    {"processes": [{"pid": None, "cmd": "sh", "args": [], "envs": {}}]},
])
def test_a_forged_process_list_is_an_unavailable_sandbox(forged, reply):
    forged.answer = lambda request: [wire.encode_json(reply)]
    r = httpx.post(f"{forged.url}/process.Process/List", json={}, headers={"Connect-Protocol-Version": "1"})
    assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text


@pytest.mark.parametrize("reply", [{}, {"envs": ["A=1"]}, {"envs": {"A": 1}}])
def test_forged_envs_are_a_clear_error(forged, reply):
    forged.answer = lambda request: [wire.encode_json(reply)]
    r = httpx.get(f"{forged.url}/envs")
    assert r.status_code == 502, (r.status_code, r.text)


SESSION = {"id": "s1", "user": "user", "pid": 9, "cwd": "/home/user", "envs": {}, "created_at": 1.5, "busy": False}


@pytest.mark.parametrize("call, reply", [
    ("session_get", {}), ("session_get", {"session": {**SESSION, "pid": "9"}}),
    ("session_get", {"session": {**SESSION, "created_at": float("nan")}}),
    ("session_list", {"sessions": [SESSION, {**SESSION, "envs": None}]}), ("session_list", {"sessions": SESSION}),
    ("session_create", {"session": {**SESSION, "busy": "no"}}),
])
async def test_a_forged_session_is_a_broken_protocol(tmp_path, call, reply):
    """The sessions API (server/sessions.py) reads these replies field by field."""
    async def serve(reader, writer):
        head = await reader.readexactly(wire.HEADER_SIZE)
        await reader.readexactly(int.from_bytes(head[1:], "big"))
        writer.write(wire.encode_json(reply))
        writer.close()

    path = str(tmp_path / "agent.sock")
    async with await asyncio.start_unix_server(serve, path):
        agent = AgentClient(path)
        args = () if call == "session_list" else ("s1",)
        with pytest.raises(SandboxNotRunning, match="broke the protocol"):
            await getattr(agent, call)(*args)
        reply = {"session": SESSION} if call != "session_list" else {"sessions": [SESSION]}
        assert await getattr(agent, call)(*args)  # a well-formed one passes
