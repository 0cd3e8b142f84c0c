"""The host <-> agent frames: one request at a time on a unix-socket connection.

Stdlib only: this module runs inside sandboxes (python3 >= 3.9) and in the control plane. What the
requests are (operation names, arguments, replies, who may send them) is in contract.py.

A frame is ``kind`` (1 byte) + ``length`` (4 bytes, big endian) + ``payload``.

    J  a JSON object (utf-8)
    O  stdout bytes of a process      E  stderr bytes      P  pty output bytes
    D  file data bytes                Z  end of data (empty payload)

A connection carries one request, or, when the host's control plane asks to keep it (contract.py:
``keep``), one request after another, each once the last is over. The client sends a ``J`` frame
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

import struct

try:  # json's C half, without importing json itself (see dumps)
    from _json import encode_basestring_ascii as _ascii
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner
except ImportError:  # a Python without it: the json package
    _make_encoder = None

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


def head(kind, length):
    """A frame's header alone, for a payload sent after it without joining the two."""
    return _HEADER.pack(kind, length)


def encode_json(obj):
    return encode(JSON, dumps(obj).encode())


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
    with memoryview(buf) as view:  # one copy of the payload, not a slice and then its bytes
        return kind, bytes(view[HEADER_SIZE:end]), end


def decode_json(payload):
    try:
        obj = loads(payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload)
    except ValueError as e:
        raise WireError("bad JSON frame: %s" % e)
    if not isinstance(obj, dict):
        raise WireError("JSON frame is not an object")
    return obj


# ---- JSON -----------------------------------------------------------------------------------------
# What json.dumps(obj, separators=(",", ":")) and json.loads(text) do, through the same C functions,
# without importing the json package: it compiles regular expressions at import (re, enum), ~4 ms of
# every sandbox's start, before its agent can answer.

_WHITESPACE = " \t\n\r"


def _not_serializable(o):
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


class _Decoding:
    """The attributes of a json.JSONDecoder that its C scanner reads, at json.loads' defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


if _make_encoder is not None:
    _scan = _make_scanner(_Decoding())

    def dumps(obj):
        """json.dumps(obj, separators=(",", ":"))."""
        # an encoder per call, as json makes one: its circular-reference marks outlive a failed call
        return "".join(_make_encoder({}, _not_serializable, _ascii, None, ":", ",", False, False, True)(obj, 0))

    def loads(text):
        """json.loads(text) of a str; ValueError if it is not one JSON value."""
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            obj, end = _scan(text, start)
        except StopIteration as e:  # json.loads says the same
            raise ValueError("expecting value at %d" % e.value) from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError("extra data at %d" % end)
        return obj
else:
    import json as _json

    def dumps(obj):
        return _json.dumps(obj, separators=(",", ":"))

    loads = _json.loads
