"""AgentStream: read() cancelled by a timeout loses nothing (envd/streams.py waits under one);
iterated, a cancel closes it, as it would an async generator.

The agent writes each frame whole, so a frame split across a timeout is made here by a stand-in
peer on a real unix socket, which writes a frame's header and part of its payload, waits, then
the rest. Through the real agent, tests/envd/test_connect_wire.py (keepalives between a command's
events) and tests/e2b (commands, watches, a sandbox ending under an open stream) drive it."""

from __future__ import annotations

import asyncio

import pytest

from sandlot import _exceptions as E
from sandlot.protocol import wire
from sandlot.server.agent_client import AgentClient


async def _peer(path, script):
    """A unix server that reads one request frame, then runs `script(writer)`; returns what it read
    after the request (b"" if the client closed)."""
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def serve(reader, writer):
        head = await reader.readexactly(wire.HEADER_SIZE)
        request = wire.decode_json(await reader.readexactly(int.from_bytes(head[1:], "big")))
        await script(writer, request)
        seen.set_result(await reader.read())
        writer.close()

    server = await asyncio.start_unix_server(serve, path)
    return server, seen


def test_a_read_cut_by_a_timeout_mid_frame_goes_on_where_it_stopped(tmp_path):
    async def script(writer, request):
        assert request["op"] == "process.start" and request["cmd"] == "/bin/true"
        writer.write(wire.encode_json({"start": {"pid": 7}}))
        frame = wire.encode(wire.STDOUT, b"hello")
        writer.write(frame[:wire.HEADER_SIZE + 2])  # the header and "he"
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(frame[wire.HEADER_SIZE + 2:])
        await asyncio.sleep(0.3)
        writer.write(wire.encode_json({"end": {"exit_code": 0, "exited": True, "status": "exit status 0"}}))
        await writer.drain()

    async def main():
        server, seen = await _peer(str(tmp_path / "a.sock"), script)
        async with server:
            stream = AgentClient(str(tmp_path / "a.sock")).start("/bin/true")
            assert await anext(stream) == {"start": {"pid": 7}}
            with pytest.raises(TimeoutError):  # mid-payload
                async with asyncio.timeout(0.15):
                    await stream.read()
            assert await anext(stream) == {"stdout": b"hello"}
            with pytest.raises(TimeoutError):  # between frames
                async with asyncio.timeout(0.15):
                    await stream.read()
            assert (await anext(stream))["end"]["exit_code"] == 0
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
            assert await asyncio.wait_for(seen, 5) == b""  # the end closed the connection

    asyncio.run(main())


def test_a_cancelled_iteration_closes_the_connection_and_a_broken_one_is_unavailable(tmp_path):
    async def silent(writer, request):
        writer.write(wire.encode_json({"start": {}}))
        await writer.drain()

    async def cut(writer, request):
        writer.write(wire.encode(wire.STDOUT, b"x")[:wire.HEADER_SIZE + 0])  # a header, no payload
        await writer.drain()
        writer.close()

    async def main():
        server, seen = await _peer(str(tmp_path / "w.sock"), silent)
        async with server:
            stream = AgentClient(str(tmp_path / "w.sock")).watch("/tmp")
            assert await anext(stream) == {"start": {}}
            with pytest.raises(TimeoutError):  # iterated, not read(): the cancel closes it
                async with asyncio.timeout(0.1):
                    await anext(stream)
            assert await asyncio.wait_for(seen, 5) == b""
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
        server, _ = await _peer(str(tmp_path / "c.sock"), cut)
        async with server:
            stream = AgentClient(str(tmp_path / "c.sock")).start("/bin/true")
            with pytest.raises(E.SandboxNotRunning, match="truncated frame"):
                await anext(stream)
            with pytest.raises(StopAsyncIteration):
                await anext(stream)

    asyncio.run(main())
