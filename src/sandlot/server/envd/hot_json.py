"""Connect JSON for the messages every command sends, without json_format's generic walk.

The e2b SDKs speak Connect JSON. protobuf's json_format reads and writes it by walking every
message's descriptor in Python: ~0.1 ms of the server's ~1.2 ms per command, for one StartRequest
and two events. Here the shapes a command uses (a StartRequest of cmd/args/envs/cwd/tag/stdin; the
process events) are read and written directly. Anything else, and anything unusual in those (a
pty, a null, a camelCase alias, a wrong type, an unknown field), goes to json_format, so the
answers and the errors stay json_format's: tests/envd/test_hot_json.py checks both give the same.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from google.protobuf import json_format

from ...protocol import process_pb2 as pb


class _Unusual(Exception):
    """Not a shape this module reads: json_format reads it."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # json_format refuses duplicate keys; a dict would keep the last one silently
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Unusual
    return obj


def _text(value: object) -> str:
    if type(value) is not str:
        raise _Unusual
    return value


def _start_request(obj: dict) -> pb.StartRequest:
    if not obj.keys() <= {"process", "tag", "stdin"} or "process" not in obj:
        raise _Unusual
    process = obj["process"]
    if type(process) is not dict or not process.keys() <= {"cmd", "args", "envs", "cwd"}:
        raise _Unusual
    config = pb.ProcessConfig(cmd=_text(process.get("cmd", "")))
    args = process.get("args", [])
    if type(args) is not list:
        raise _Unusual
    config.args.extend([_text(a) for a in args])
    envs = process.get("envs", {})
    if type(envs) is not dict:
        raise _Unusual
    for key, value in envs.items():
        config.envs[key] = _text(value)
    if "cwd" in process:
        config.cwd = _text(process["cwd"])
    message = pb.StartRequest(process=config)
    if "tag" in obj:
        message.tag = _text(obj["tag"])
    if "stdin" in obj:
        if type(obj["stdin"]) is not bool:
            raise _Unusual
        message.stdin = obj["stdin"]
    return message


def _event(message: pb.StartResponse | pb.ConnectResponse) -> dict:
    if not message.HasField("event"):
        return {}
    event = message.event
    kind = event.WhichOneof("event")
    if kind == "start":
        inner = {"pid": event.start.pid} if event.start.pid else {}
    elif kind == "data":
        output = event.data.WhichOneof("output")
        inner = {output: base64.b64encode(getattr(event.data, output)).decode()} if output else {}
    elif kind == "end":
        end, inner = event.end, {}
        if end.exit_code:
            inner["exitCode"] = end.exit_code
        if end.exited:
            inner["exited"] = True
        if end.status:
            inner["status"] = end.status
        if end.HasField("error"):
            inner["error"] = end.error
    elif kind == "keepalive":
        inner = {}
    else:
        return {"event": {}}
    return {"event": {kind: inner}}


_DECODERS: dict[type, Callable[[dict], object]] = {pb.StartRequest: _start_request}
_ENCODERS: dict[type, Callable[[object], dict]] = {pb.StartResponse: _event, pb.ConnectResponse: _event}


def decode(data: bytes, message_class: type):
    """`data` as a `message_class`; raises what json_format raises on what it refuses."""
    fast = _DECODERS.get(message_class)
    if fast is not None:
        try:
            return fast(json.loads(data.decode(), object_pairs_hook=_no_duplicates))
        except (_Unusual, ValueError, TypeError, AttributeError):
            pass  # json_format says what is wrong with it, if anything
    message = message_class()
    json_format.Parse(data, message, ignore_unknown_fields=True)
    return message


def encode(message) -> bytes:
    """Compact Connect JSON (json_format's MessageToJson indents, and an indent puts json.dumps on
    its pure-Python encoder)."""
    fast = _ENCODERS.get(type(message))
    obj = fast(message) if fast is not None else json_format.MessageToDict(message)
    return json.dumps(obj, separators=(",", ":")).encode()
