"""Helpers shared by the tool-layer tests."""

from __future__ import annotations

import struct
import zlib

from sandlot import Sandbox, SandboxInfo


def running(conn) -> list[SandboxInfo]:
    return list(Sandbox.list(**conn))


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0")) + chunk(b"IEND", b""))
