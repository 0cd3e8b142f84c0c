"""A template build's request (templates/build_spec.py): E2B's TemplateBuildStartV2 checked before
anything runs; every refusal names the step and what is wrong."""

from __future__ import annotations

import pytest

from sandlot import InvalidArgument
from sandlot.templates.build_spec import parse

HASH = "ab" * 32


def test_the_sdks_request_parses():
    spec = parse({"fromImage": "e2bdev/base", "fromTemplate": "base", "force": False, "steps": [
        {"type": "RUN", "args": ["echo hi", "root"], "force": True},
        {"type": "COPY", "args": ["app.py", "/app/", "user", "0755"], "filesHash": HASH, "force": False},
        {"type": "ENV", "args": ["A", "1", "B", "2"]},
        {"type": "WORKDIR", "args": ["/app"]},
        {"type": "USER", "args": ["root"]},
    ], "startCmd": "python3 app.py", "readyCmd": "sleep 1"})
    assert spec.from_template == "base" and spec.from_image is None  # the SDK sends its default image too
    assert [s.kind for s in spec.steps] == ["RUN", "COPY", "ENV", "WORKDIR", "USER"]
    assert spec.steps[0].force and spec.file_hashes() == [HASH]
    assert (spec.start_cmd, spec.ready_cmd) == ("python3 app.py", "sleep 1")


@pytest.mark.parametrize(("body", "message"), [
    ({}, "fromImage or fromTemplate"),
    ({"fromImage": ""}, "fromImage"),
    ({"fromImage": "x", "steps": "no"}, "steps must be a list"),
    ({"fromImage": "x", "steps": [{"type": "ADD"}]}, "step 1: type 'ADD' is not supported"),
    ({"fromImage": "x", "steps": [{"type": "RUN", "args": []}]}, "step 1: RUN needs a command"),
    ({"fromImage": "x", "steps": [{"type": "RUN", "args": ["x", "bad user!"]}]}, "not a user name"),
    ({"fromImage": "x", "steps": [{"type": "COPY", "args": ["a", "/b"]}]}, "filesHash"),
    ({"fromImage": "x", "steps": [{"type": "COPY", "args": ["a", "/b", "", "rwx"], "filesHash": HASH}]},
     "octal mode"),
    ({"fromImage": "x", "steps": [{"type": "ENV", "args": ["1BAD", "v"]}]}, "valid names"),
    ({"fromImage": "x", "steps": [{"type": "ENV", "args": ["A"]}]}, "name/value pairs"),
    ({"fromImage": "x", "steps": [{"type": "WORKDIR", "args": ["relative"]}]}, "absolute"),
    ({"fromImage": "x", "steps": [{"type": "RUN", "args": ["a\x00b"]}]}, "list of strings"),
    ({"fromImage": "x", "fromImageRegistry": "creds"}, "fromImageRegistry"),
])
def test_refused(body, message):
    with pytest.raises(InvalidArgument, match=message):
        parse(body)
