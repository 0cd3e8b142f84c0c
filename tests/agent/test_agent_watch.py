"""files.watch: inotify events, recursive watches, entries, and events being sent before the reply
of the change that caused them."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from sandlot.protocol import wire
from sandlot import SandlotError


async def next_events(stream, count, timeout=5.0):
    events = []
    while len(events) < count:
        message = await asyncio.wait_for(stream.__anext__(), timeout)
        if "event" in message:
            events.append(message["event"])
    return events


async def quiet(stream, seconds=0.2):
    """No event arrives for a while."""
    with pytest.raises(asyncio.TimeoutError):
        await next_events(stream, 1, seconds)


async def test_flat_watch(client, home):
    root = home / "watched"
    await client.make_dir(str(root))
    stream = client.watch(str(root))
    assert await stream.__anext__() == {"start": {}}
    await client.write(str(root / "f.txt"), None, b"1")
    (root / "f.txt").write_text("more")  # a change by another process
    os.chmod(root / "f.txt", 0o600)
    os.rename(root / "f.txt", root / "g.txt")
    os.unlink(root / "g.txt")
    events = []
    while ("g.txt", "remove") not in events:  # how many writes the kernel coalesces varies
        events += [(e["name"], e["type"]) for e in await next_events(stream, 1)]
    assert events[0] == ("f.txt", "create")
    assert ("f.txt", "write") in events and ("f.txt", "chmod") in events
    assert events[-3:] == [("f.txt", "rename"), ("g.txt", "create"), ("g.txt", "remove")]
    (root / "sub").mkdir()
    (root / "sub" / "deeper.txt").write_text("not watched")
    assert [(e["name"], e["type"]) for e in await next_events(stream, 1)] == [("sub", "create")]
    await quiet(stream)
    await stream.aclose()


async def test_recursive_watch_with_entries(client, home, user):
    root = home / "rwatched"
    await client.make_dir(str(root / "existing"))
    stream = client.watch(str(root), recursive=True, include_entry=True)
    await stream.__anext__()
    await client.write(str(root / "existing" / "a.txt"), None, b"abc")
    event = (await next_events(stream, 1))[0]
    assert event["name"] == "existing/a.txt" and event["type"] == "create"
    assert event["entry"]["path"] == str(root / "existing" / "a.txt") and event["entry"]["owner"] == user.pw_name
    await next_events(stream, 1)  # its write
    os.makedirs(root / "new" / "deep")  # made faster than a watch can be added: found by a scan
    await asyncio.sleep(0.1)
    (root / "new" / "deep" / "x").write_text("x")
    names = {(e["name"], e["type"]) for e in await next_events(stream, 4)}
    assert {("new", "create"), ("new/deep", "create"), ("new/deep/x", "create")} <= names
    await stream.aclose()


async def test_events_are_sent_before_the_write_returns(agent, client, home):
    root = home / "ordered"
    await client.make_dir(str(root))
    # A raw socket shows what the agent had sent at the moment the write returned.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(agent.socket)
        sock.sendall(wire.encode_json({"op": "files.watch", "path": str(root)}))
        sock.settimeout(5)
        assert b'"start"' in sock.recv(100)
        await client.write(str(root / "x"), None, b"x")
        pending = sock.recv(65536, socket.MSG_DONTWAIT)
    assert b'"create"' in pending and b'"write"' in pending


async def test_watch_ends_when_the_directory_goes(client, home):
    root = home / "doomed"
    root.mkdir()
    stream = client.watch(str(root))
    await stream.__anext__()
    os.rmdir(root)
    rest = [m async for m in stream]
    assert all("event" in m or "keepalive" in m for m in rest)


async def test_watch_errors(client, home):
    (home / "a-file").write_text("")
    for path, code in (("no-such-dir", "not_found"), ("a-file", "invalid_argument")):
        with pytest.raises(SandlotError) as e:
            await client.watch(str(home / path)).__anext__()
        assert e.value.code == code
