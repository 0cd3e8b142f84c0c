"""The host <-> sandbox contract (protocol/contract.py): every operation routed and documented, the
agent's config read as written, and the in-sandbox tree holding only what runs inside, stdlib only."""

from __future__ import annotations

import importlib
import json
import math
import subprocess

import pytest
from agent_support import AGENT_PYTHON

from sandlot.protocol import contract, wire
from sandlot.runtimes.agent_setup import install_agent


def test_every_operation_has_a_handler_in_the_agent():
    for op, (module, function) in contract.OPERATIONS.items():
        handler = getattr(importlib.import_module(f"sandlot.agent.{module}"), function, None)
        assert callable(handler), f"{op}: no sandlot.agent.{module}.{function}"
    assert contract.UNPRIVILEGED <= set(contract.OPERATIONS)


def test_every_operation_is_named_once_and_documented():
    names = {v for k, v in vars(contract).items() if k.isupper() and k.startswith(("PING", "ENV", "PROCESS_",
                                                                                      "FILES_", "SUDO", "SESSION_"))
             and k != "SUDO_SHIM_PATH"}
    assert names == set(contract.OPERATIONS)
    doc = contract.__doc__.split("Operations (arguments -> reply).", 1)[1]
    for op in contract.OPERATIONS:
        assert f"\n    {op} " in doc, f"{op} is not documented in contract.py"


def test_agent_config_round_trip_and_closed_defaults():
    config = contract.AgentConfig(envs={"A": 1}, allow_sudo=True, root_caps=("CAP_KILL",), keepalive_interval=2)
    read = contract.AgentConfig.from_json(config.to_json())
    assert {k: getattr(read, k) for k in read.__slots__} == {
        "envs": {"A": "1"}, "default_user": "user", "allow_sudo": True, "root_caps": ["CAP_KILL"],
        "run_as_default_user": False, "keepalive_interval": 2.0, "max_list_entries": 100_000,
        "process_filter": None, "max_output_bytes": 0, "ready_fd": None, "output_replay_bytes": 64 * 1024}
    closed = contract.AgentConfig.from_json(json.dumps({"a_newer_key": 1}))  # unknown keys: ignored
    assert not closed.allow_sudo and closed.root_caps is None and closed.envs == {}


def test_the_in_sandbox_tree_holds_only_the_agent_protocol_and_driver(tmp_path):
    tree = install_agent(tmp_path)
    files = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {"__init__.py", "agent/__init__.py", "agent/main.py", "agent/sudo_shim.py", "protocol/__init__.py",
            "protocol/wire.py", "protocol/contract.py", "kernels/driver.py", "gateway/main.py"} <= files
    assert not {f for f in files if f.startswith("protocol/")} - {"protocol/__init__.py", "protocol/wire.py",
                                                                  "protocol/contract.py"}
    assert not any(f.startswith(("server/", "client/", "runtimes/")) or "agent_client" in f for f in files)
    for init in ("__init__.py", "agent/__init__.py", "protocol/__init__.py", "kernels/__init__.py"):
        assert (tree / init).read_bytes() == b""
    assert install_agent(tmp_path) == tree  # one copy per code version


def test_the_agent_imports_only_the_stdlib_and_starts_light(tmp_path):
    """Run with the template's kind of python (-S: no site-packages) from the installed tree: every
    agent and protocol module imports, nothing outside the stdlib loads, and what an idle agent
    imports before it answers (main, server, config, loop) pulls in neither dataclasses nor typing
    (~8 ms per sandbox), nor json, re, enum, signal, socket or selectors (~10 ms)."""
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "sandlot").symlink_to(install_agent(tmp_path))
    agent_modules = sorted(p.stem for p in (tmp_path / "opt" / "sandlot" / "agent").glob("*.py")
                           if p.stem != "__init__")
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import sandlot.agent.main, sandlot.agent.server, sandlot.agent.config, sandlot.agent.loop\n"
        "idle = sorted(m for m in ('dataclasses', 'typing', 'inspect', 'asyncio', 'json', 're', 'enum', 'signal',"
        " 'socket', 'selectors', 'collections') if m in sys.modules)\n"
        "import importlib, json\n"
        "for m in sys.argv[2:]:\n"
        "    importlib.import_module(m)\n"
        "import sandlot.agent.sudo_shim as shim\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "print(json.dumps({'idle': idle, 'foreign': sorted(top - set(sys.stdlib_module_names) - {'sandlot', '__main__'}),"
        " 'socket': shim.SOCKET, 'file': sandlot.__file__}))\n"
    )
    gateway_modules = sorted(p.stem for p in (tmp_path / "opt" / "sandlot" / "gateway").glob("*.py")
                             if p.stem != "__init__")
    assert "main" in gateway_modules  # the MCP gateway (mcp-gateway template) is stdlib only too
    modules = [f"sandlot.agent.{m}" for m in agent_modules] + ["sandlot.protocol.wire", "sandlot.protocol.contract"] \
        + [f"sandlot.gateway.{m}" for m in gateway_modules]
    out = subprocess.run([AGENT_PYTHON, "-S", "-B", "-c", code, str(tmp_path / "opt"), *modules],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    found = json.loads(out)
    assert found["file"].startswith(str(tmp_path))  # the installed tree, not the host's package
    assert found["foreign"] == []
    assert found["idle"] == []
    # the sudo shim is a lone script: it names the agent's socket itself, and must name the contract's
    assert found["socket"] == contract.AGENT_SOCKET


def test_the_wire_json_is_the_json_package_s():
    """wire.dumps/loads drive json's C functions without importing json (protocol/wire.py): same text
    out, same values in, and every malformed frame refused as json.loads refuses it."""
    values = [{"op": "files.write", "path": "/tmp/\u00e9 \"q\"\n\x01", "n": [0, -1, 2**70, 1.5, 1e-300, -0.0],
               "flags": [True, False, None], "nested": {"a": {"b": []}}}, [], "text", 7, {"emoji": "\U0001f600"}]
    for value in values:
        text = json.dumps(value, separators=(",", ":"))
        assert wire.dumps(value) == text
        assert repr(wire.loads(text)) == repr(json.loads(text))
        assert wire.loads(" \n" + json.dumps(value, indent=2) + "\t\r\n") == json.loads(text)
    assert math.isnan(wire.loads('{"x": NaN}')["x"]) and wire.loads("[-Infinity]") == [float("-inf")]
    for bad in ["", "  ", "{", "[1,]", "{} x", "nul", '{"a":1}}', "[1] [2]", '"\x01"', "{'a': 1}"]:
        with pytest.raises(ValueError):
            json.loads(bad)
        with pytest.raises(ValueError):
            wire.loads(bad)
    with pytest.raises(TypeError, match="not JSON serializable"):
        wire.dumps({"x": object()})
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        wire.dumps(loop)
    assert wire.dumps([{"a": 1}]) == '[{"a":1}]'  # a failed call leaves nothing behind
    for frame in (b"", b"{", b"[1]", b'{"a":1} x', b"\xff"):
        with pytest.raises(wire.WireError):
            wire.decode_json(frame)
