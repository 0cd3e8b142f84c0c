"""hot_json reads and writes what json_format would, byte for byte in meaning, errors included.

The SDK-level tests (test_process.py, tests/e2b) drive it through real commands; these check the
cases no SDK sends: every event shape, and request bodies a hostile client could."""

import base64
import json
import random

import pytest
from google.protobuf import json_format

from sandlot.protocol import process_pb2 as pb
from sandlot.server.envd import hot_json


def _reference_decode(data: bytes, cls):
    message = cls()
    json_format.Parse(data, message, ignore_unknown_fields=True)
    return message


def _events():
    rng = random.Random(7)
    E = pb.ProcessEvent
    yield pb.StartResponse()
    yield pb.StartResponse(event=E())
    yield pb.StartResponse(event=E(keepalive=E.KeepAlive()))
    for pid in (0, 1, 4_294_967_295):
        yield pb.StartResponse(event=E(start=E.StartEvent(pid=pid)))
    for field in ("stdout", "stderr", "pty"):
        for data in (b"", b"\x00\xff", bytes(rng.randrange(256) for _ in range(1000)), "é\n".encode()):
            yield pb.ConnectResponse(event=E(data=E.DataEvent(**{field: data})))
    yield pb.StartResponse(event=E(data=E.DataEvent()))
    for code in (0, 1, -1, 255, -2_147_483_648, 2_147_483_647):
        for exited in (False, True):
            yield pb.StartResponse(event=E(end=E.EndEvent(exit_code=code, exited=exited, status=f"exit status {code}")))
    yield pb.StartResponse(event=E(end=E.EndEvent()))
    yield pb.StartResponse(event=E(end=E.EndEvent(error="")))  # optional: present though empty
    yield pb.ConnectResponse(event=E(end=E.EndEvent(status="signal: killed", error="killed \"x\"\n")))


@pytest.mark.parametrize("message", list(_events()), ids=lambda m: json_format.MessageToJson(m, indent=None))
def test_events_are_written_as_json_format_writes_them(message):
    ours = hot_json.encode(message)
    assert json.loads(ours) == json_format.MessageToDict(message)
    assert ours == json.dumps(json.loads(ours), separators=(",", ":")).encode()  # compact


REQUESTS = [
    b'{"process":{"cmd":"/bin/bash","args":["-l","-c","true"]},"stdin":false}',
    b'{"process":{"cmd":"/bin/bash","args":["-l","-c","echo \\u00e9"],"envs":{"A":"1","B":""},"cwd":"/w"},'
    b'"tag":"t","stdin":true}',
    b'{"process":{}}',
    b'{"process":{"cmd":"x","cwd":""}}',  # optional: present though empty
    b'{}',
    # what json_format reads differently from a plain JSON load, or refuses
    b'{"process":null}',
    b'{"process":{"cmd":"x","args":null}}',
    b'{"process":{"cmd":"x","envs":{"A":null}}}',
    b'{"process":{"cmd":"x"},"tag":null}',
    b'{"process":{"cmd":"x"},"pty":{"size":{"cols":80,"rows":24}}}',
    b'{"process":{"cmd":"x","extra":1},"unknown":{"a":[1]}}',
    b'{"process":{"cmd":"x"},"stdin":"true"}',
    b'{"process":{"cmd":"x"},"stdin":1}',
    b'{"process":{"cmd":1}}',
    b'{"process":{"cmd":"x","args":"-c"}}',
    b'{"process":{"cmd":"x","args":[1]}}',
    b'{"process":{"cmd":"x","envs":{"A":1}}}',
    b'{"process":{"cmd":"x","envs":[]}}',
    b'{"process":{"cmd":"x","cwd":null}}',
    b'{"process":{"cmd":"x"},"process":{"cmd":"y"}}',  # a duplicate key
    b'{"process":{"cmd":"x","cmd":"y"}}',
    b'{"process":{"cmd":"\\ud800"}}',  # a lone surrogate: not a string protobuf can hold
    b'{"process":{"cmd":"x"}} trailing',
    b'[]',
    b'"process"',
    b'',
    b'\xff\xfe{\x00}\x00',  # UTF-16: json.loads would read it, json_format does not
    b'{"process":{"cmd":"x"},"stdin":false,"stdin":true}',
    b'{"process":{"cmd":"x","args":["a","b"],"envs":{"K":"v"}}, "tag": "\\u0000"}',
]


@pytest.mark.parametrize("data", REQUESTS)
def test_requests_are_read_as_json_format_reads_them(data):
    try:
        expected = _reference_decode(data, pb.StartRequest)
    except Exception as e:  # noqa: BLE001 - whatever json_format raises, we raise the same
        with pytest.raises(type(e)):
            hot_json.decode(data, pb.StartRequest)
        return
    ours = hot_json.decode(data, pb.StartRequest)
    assert ours == expected
    assert [f.name for f, _ in ours.ListFields()] == [f.name for f, _ in expected.ListFields()]  # presence too
    assert ours.process.HasField("cwd") == expected.process.HasField("cwd")


def test_other_messages_go_to_json_format():
    req = b'{"process":{"pid":7},"signal":"SIGNAL_SIGKILL"}'
    assert hot_json.decode(req, pb.SendSignalRequest) == _reference_decode(req, pb.SendSignalRequest)
    info = pb.ListResponse(processes=[pb.ProcessInfo(config=pb.ProcessConfig(cmd="x", args=["a"]), pid=3, tag="t")])
    assert json.loads(hot_json.encode(info)) == json_format.MessageToDict(info)
    assert base64.b64decode(json.loads(hot_json.encode(pb.ConnectResponse(
        event=pb.ProcessEvent(data=pb.ProcessEvent.DataEvent(stdout=b"\x01\x02")))))["event"]["data"]["stdout"]) == b"\x01\x02"
