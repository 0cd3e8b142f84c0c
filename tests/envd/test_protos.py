"""The committed generated modules are what scripts/gen-protos.sh makes of the .proto files."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = ["process_pb2.py", "process_pb2.pyi", "process_connect.py",
             "filesystem_pb2.py", "filesystem_pb2.pyi", "filesystem_connect.py"]


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None
                    or shutil.which("protoc-gen-connectrpc", path=os.path.dirname(sys.executable)) is None,
                    reason="the code generators (grpcio-tools, protoc-gen-connectrpc) are not installed")
def test_regenerating_changes_nothing(tmp_path):
    subprocess.run([REPO / "scripts" / "gen-protos.sh", tmp_path], check=True, env={**os.environ, "PYTHON": sys.executable})
    fresh, committed = tmp_path / "sandlot" / "protocol", REPO / "src" / "sandlot" / "protocol"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, GENERATED, shallow=False)
    assert mismatch == errors == [], "run scripts/gen-protos.sh and commit the result"


def test_no_is_symlink_field():
    from sandlot.protocol import filesystem_pb2

    assert "is_symlink" not in filesystem_pb2.EntryInfo.DESCRIPTOR.fields_by_name
