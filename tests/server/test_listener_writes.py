"""The listener's coalesced writes (server/listener.py CoalescedWrites) on a real socket: the small
writes of one loop turn leave in one send, in order; a large one, a close or an end-of-file sends
what waits at once; an abort drops it."""

from __future__ import annotations

import asyncio
import socket

from sandlot.server.listener import COALESCE_BYTES, CoalescedWrites


class Sink(asyncio.Protocol):
    pass


async def pair() -> tuple[CoalescedWrites, socket.socket]:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(Sink, ours)
    theirs.setblocking(False)
    return CoalescedWrites(transport, asyncio.get_running_loop()), theirs


def received(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


async def test_small_writes_of_one_turn_leave_together_at_its_end():
    writes, peer = await pair()
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    writes.write(b"")
    writes.writelines([b"5\r\nstart\r\n", b"3\r\nend\r\n"])
    assert received(peer) == b""  # not yet: the turn goes on
    assert writes.get_write_buffer_size() == 19 + 10 + 8
    await asyncio.sleep(0)
    assert received(peer) == b"HTTP/1.1 200 OK\r\n\r\n5\r\nstart\r\n3\r\nend\r\n"  # one send, in order
    writes.write(b"next")
    await asyncio.sleep(0)
    assert received(peer) == b"next"
    writes.close()
    peer.close()


async def test_a_large_write_a_close_and_an_eof_send_at_once_an_abort_drops():
    writes, peer = await pair()
    writes.write(b"head")
    big = b"x" * COALESCE_BYTES
    writes.write(big)  # what waited goes first, then it, before the turn ends
    got = b""
    for _ in range(100):  # no loop turn in between: sent by write() itself
        got += received(peer)
    assert got == b"head" + big

    writes.write(b"last words")
    writes.write_eof()
    assert received(peer) == b"last words"
    writes.close()
    peer.close()

    writes, peer = await pair()
    writes.write(b"bye")
    writes.close()
    assert received(peer) == b"bye"
    peer.close()

    writes, peer = await pair()
    writes.write(b"never")
    writes.abort()
    await asyncio.sleep(0.01)
    assert peer.recv(100) == b""  # the connection's end, and nothing of what waited
    peer.close()
