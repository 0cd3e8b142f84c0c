"""The host <-> agent frames: one unix-socket connection per request.

Stdlib only: this module runs inside sandboxes (python3 >= 3.9) and in the control plane. What the
requests are (operation names, arguments, replies, who may send them) is in contract.py.

A frame is ``kind`` (1 byte) + ``length`` (4 bytes, big endian) + ``payload``.

    J  a JSON object (utf-8)
    O  stdout bytes of a process      E  stderr bytes      P  pty output bytes
    D  file data bytes                Z  end of data (empty payload)

Every connection carries exactly one request. The client sends a ``J`` frame
``{"op": NAME, ...arguments}``; for ``files.write`` it then sends ``D`` frames and one ``Z``;
for ``process.stream_input`` it sends ``J`` frames ``{"data": b64, "pty": bool}`` until it closes.

Replies. A failure is always one ``J`` frame ``{"error": {"code": CODE, "message": TEXT}}`` and
the end of the connection (the agent half-closes, then drops whatever the client still sends until
it closes, so a client in the middle of an upload still reads the error). CODE is a Connect code
name (``not_found``, ``invalid_argument``, ``already_exists``, ``permission_denied``,
``failed_precondition``, ``deadline_exceeded``, ``resource_exhausted``, ``internal``,
``unavailable``, ``unauthenticated`` for a ``user`` that does not exist, as envd answers).
Streams send ``{"keepalive": {}}`` after 50 s of silence (agent.json's ``keepalive_interval``).
"""

import json
import struct

JSON = b"J"
STDOUT = b"O"
STDERR = b"E"
PTY = b"P"
DATA = b"D"
END = b"Z"

_HEADER = struct.Struct(">cI")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 16 * 1024 * 1024
CHUNK = 256 * 1024


class WireError(Exception):
    """The peer broke the framing (short read, oversize frame, bad JSON)."""


def encode(kind, payload):
    return _HEADER.pack(kind, len(payload)) + payload


def encode_json(obj):
    return encode(JSON, json.dumps(obj, separators=(",", ":")).encode())


def error_frame(code, message):
    return encode_json({"error": {"code": code, "message": message}})


def split_frame(buf):
    """(kind, payload, bytes used) of the frame at the start of ``buf``, or None until it is whole."""
    if len(buf) < HEADER_SIZE:
        return None
    kind, length = _HEADER.unpack_from(buf)
    if length > MAX_FRAME:
        raise WireError("frame too large: %d bytes" % length)
    end = HEADER_SIZE + length
    if len(buf) < end:
        return None
    return kind, bytes(buf[HEADER_SIZE:end]), end


def decode_json(payload):
    try:
        obj = json.loads(payload)
    except ValueError as e:
        raise WireError("bad JSON frame: %s" % e)
    if not isinstance(obj, dict):
        raise WireError("JSON frame is not an object")
    return obj
