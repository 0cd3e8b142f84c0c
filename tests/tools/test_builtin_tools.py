"""The built-in tools on a real sandbox, through the dispatcher, as a model would call them."""

from __future__ import annotations

import base64
import json
import shlex

import pytest

from sandlot.tools import ALPHORA_TOOLS, AsyncToolset, Toolset, bind, call_tool
from tool_helpers import running, tiny_png


@pytest.fixture
def tools(sandbox):
    return Toolset(sandbox)


def test_run_python_code_and_shell(tools):
    r = tools.call_tool("run_python_code", {"code": "print(1 + 1)"})
    assert (r.text, r.is_error, r.data["exit_code"]) == ("2", False, 0)
    r = tools.call_tool("run_python_code", {"code": "import sys; print('out'); sys.exit('boom')"})
    assert r.is_error and r.data["exit_code"] == 1
    assert r.text == "out\n[stderr]\nboom\n[exit code 1]"
    r = tools.call_tool("run_shell_command", '{"command": "echo Hello | tr a-z A-Z"}')  # JSON string, as OpenAI
    assert r.text == "HELLO" and not r.is_error
    r = tools.call_tool("run_shell_command", {"command": "pwd", "cwd": "/tmp"})
    assert r.text == "/tmp"


def test_timeout_keeps_partial_output(tools):
    r = tools.call_tool("run_shell_command", {"command": "echo started; sleep 30", "timeout": 1})
    assert r.is_error and r.data["timed_out"]
    assert r.text.startswith("started") and "timed out after 1 s" in r.text


def test_session_exec_keeps_the_shell_between_calls(tools):
    assert not tools.call_tool("session_exec", {"command": "mkdir -p proj && cd proj && export MODE=dev"}).is_error
    r = tools.call_tool("session_exec", {"command": "pwd; echo $MODE"})
    assert r.text == "/home/user/proj\ndev" and r.data["exit_code"] == 0
    # another session is another shell; run_shell_command keeps nothing
    assert tools.call_tool("session_exec", {"command": "pwd", "session": "other"}).text == "/home/user"
    assert tools.call_tool("run_shell_command", {"command": "echo ${MODE:-unset}"}).text == "unset"
    r = tools.call_tool("session_exec", {"command": "false"})
    assert r.is_error and r.text == "[exit code 1]"
    r = tools.call_tool("session_exec", {"command": "echo begun; sleep 30", "timeout": 1})
    assert r.is_error and r.data["timed_out"] and r.text.startswith("begun") and "the session stays" in r.text
    assert tools.call_tool("session_exec", {"command": "echo $MODE"}).text == "dev"  # interrupted, not lost


def test_run_python_file_with_args(tools):
    tools.call_tool("save_file", {"path": "script.py", "content": "import sys\nprint(f'Args: {sys.argv[1:]}')\n"})
    r = tools.run_python_file("script.py", ["arg1", "arg2"])  # positional, as Alphora calls its tools
    assert r.text == "Args: ['arg1', 'arg2']"


def test_file_tools_round_trip(tools):
    r = tools.call_tool("save_file", {"path": "data/config.json", "content": '{"key": "value"}'})
    assert r.data == {"path": "/home/user/data/config.json", "size": 16, "file_type": "json"}
    assert tools.call_tool("read_file", {"path": "data/config.json"}).text == '{"key": "value"}'
    assert tools.call_tool("file_exists", {"path": "data/config.json"}).data["exists"] is True
    tools.call_tool("copy_file", {"source": "data/config.json", "destination": "data/copy.json"})
    r = tools.call_tool("move_file", {"source": "data/copy.json", "destination": "data/config.json"})
    assert r.is_error and "already exists" in r.text  # a move never overwrites
    tools.call_tool("move_file", {"source": "data/copy.json", "destination": "data/moved.json"})
    listing = tools.call_tool("list_files", {"path": "data"}).text.splitlines()
    assert listing == ["[FILE] config.json (16 bytes)", "[FILE] moved.json (16 bytes)"]
    assert tools.call_tool("list_files", {"path": ".", "recursive": True, "pattern": "*.json"}).text.splitlines() \
        == ["data/config.json", "data/moved.json"]
    r = tools.call_tool("delete_file", {"path": "data"})
    assert r.is_error and "recursive=true" in r.text
    assert not tools.call_tool("delete_file", {"path": "data", "recursive": True}).is_error
    assert tools.call_tool("file_exists", {"path": "data/config.json"}).data["exists"] is False
    r = tools.call_tool("read_file", {"path": "nope.txt"})
    assert r.is_error and "nope.txt" in r.text


def test_agentscope_filesystem_tools(tools):
    tools.call_tool("create_directory", {"path": "proj/src"})
    tools.call_tool("write_file", {"path": "proj/src/main.py", "content": "def main():\n    return 'hi'\n"})
    tools.call_tool("write_file", {"path": "proj/README.md", "content": "# proj\n"})
    r = tools.call_tool("read_multiple_files", {"paths": ["proj/README.md", "proj/missing.md"]})
    assert "proj/README.md:\n# proj" in r.text and "proj/missing.md: error:" in r.text and not r.is_error
    r = tools.call_tool("edit_file", {"path": "proj/src/main.py", "dry_run": True,
                                      "edits": [{"old_text": "'hi'", "new_text": "'hello'"}]})
    assert r.text.startswith("Dry run") and "-    return 'hi'\n+    return 'hello'" in r.text
    assert "'hi'" in tools.call_tool("read_file", {"path": "proj/src/main.py"}).text  # unchanged
    tools.call_tool("edit_file", {"path": "proj/src/main.py", "edits": [{"old_text": "'hi'", "new_text": "'hello'"}]})
    assert "'hello'" in tools.call_tool("read_file", {"path": "proj/src/main.py"}).text
    r = tools.call_tool("edit_file", {"path": "proj/src/main.py", "edits": [{"old_text": "absent", "new_text": "x"}]})
    assert r.is_error and "does not occur" in r.text
    assert tools.call_tool("list_directory", {"path": "proj"}).text == "[FILE] README.md (7 bytes)\n[DIR]  src/"
    assert tools.call_tool("directory_tree", {"path": "proj"}).text == \
        "/home/user/proj/\n├── README.md\n└── src/\n    └── main.py"
    assert tools.call_tool("search_files", {"path": "proj", "pattern": "*.py"}).text == "/home/user/proj/src/main.py"
    r = tools.call_tool("search_files", {"path": "proj", "content": "HELLO", "ignore_case": True})
    assert r.text == "/home/user/proj/src/main.py:2:     return 'hello'"
    info = tools.call_tool("get_file_info", {"path": "proj/README.md"}).data
    assert (info["type"], info["size"], info["owner"]) == ("file", 7, "user")
    assert tools.call_tool("list_allowed_directories").data == {"directories": ["/"]}


def test_long_output_is_cut_and_pageable(sandbox):
    tools = Toolset(sandbox, max_output_chars=1000)
    r = tools.call_tool("run_shell_command", {"command": "seq 1 2000"})
    assert len(r.text) < 1300 and "truncated" in r.text
    saved = r.data["truncated"]["saved_to"]
    shown = r.text.split("\n[...")[0].splitlines()
    assert shown[-1] == str(len(shown))  # cut at a line boundary
    page = tools.call_tool("read_file", {"path": saved, "offset": len(shown) + 1, "limit": 5})
    assert page.text.splitlines()[:5] == [str(n) for n in range(len(shown) + 1, len(shown) + 6)]
    assert f"continue with read_file(path=\"{saved}\", offset={len(shown) + 6})" in page.text


def test_a_huge_output_is_not_kept_whole(sandbox, tools):
    """A command tool keeps the first 4 MiB of each stream and counts the rest: `sandlot serve` runs
    these tools for /mcp callers, and 800 MB of output grew it by 5 GB."""
    r = tools.call_tool("run_shell_command", {"command": "head -c 12M /dev/zero | tr '\\0' a; echo; echo err >&2"})
    assert not r.is_error and r.text.startswith("a" * 1000)
    assert r.data["truncated"]["total_chars"] < 5 << 20, r.data
    tail = sandbox.commands.run(f"tail -c 200 {r.data['truncated']['saved_to']}").stdout
    assert tail.endswith("a\n[... 8.0 MiB more output not kept]\n[stderr]\nerr"), tail


def test_binary_refused_images_returned(sandbox, tools):
    sandbox.files.write("blob.bin", b"\x00\x01\x02" * 100)
    r = tools.call_tool("read_file", {"path": "blob.bin"})
    assert r.is_error and "binary file" in r.text
    sandbox.files.write("dot.png", tiny_png())
    r = tools.call_tool("read_file", {"path": "dot.png"})
    assert not r.is_error and r.images[0].mime_type == "image/png"
    assert base64.b64decode(r.images[0].data) == tiny_png()
    assert r.to_anthropic("t1")["content"][0]["source"]["media_type"] == "image/png"


def test_allowed_dirs_refuse_escapes(sandbox):
    sandbox.files.write("work/ok.txt", "fine")
    sandbox.commands.run("ln -s /etc work/etc-link")
    tools = Toolset(sandbox, allowed_dirs=["/home/user/work"])
    assert tools.call_tool("read_file", {"path": "work/ok.txt"}).text == "fine"
    for path in ("/etc/passwd", "work/../../../etc/passwd", "work/etc-link/passwd", "bad\0path"):
        r = tools.call_tool("read_file", {"path": path})
        assert r.is_error and "PathError" in r.text, path
    assert tools.call_tool("list_allowed_directories").data == {"directories": ["/home/user/work"]}


def test_a_realpath_the_sandbox_replaced_is_read_no_further_than_a_path(sandbox):
    """The sandbox's root owns its realpath: one that prints 64 MiB is refused, and no more than a
    path's worth of it is kept on this side (the error quotes none of it)."""
    sandbox.files.write("work/ok.txt", "fine")
    fake = "#!/bin/sh\nhead -c 67108864 /dev/zero | tr '\\0' a\n"
    sandbox.commands.run(f"cp /usr/bin/realpath /tmp/realpath.real && printf %s {shlex.quote(fake)} > "
                         "/usr/bin/realpath", user="root")
    try:
        r = Toolset(sandbox, allowed_dirs=["/home/user/work"]).call_tool("read_file", {"path": "work/ok.txt"})
        assert r.is_error and "PathError" in r.text and len(r.text) < 1000, r.text[:200]
    finally:
        sandbox.commands.run("cp /tmp/realpath.real /usr/bin/realpath", user="root")


def test_bad_arguments_are_tool_errors(tools):
    r = tools.call_tool("run_python_code", {})
    assert r.is_error and "code: Field required" in r.text
    r = tools.call_tool("run_python_code", {"code": "1", "bogus": 2})
    assert r.is_error and "bogus: Extra inputs are not permitted" in r.text
    r = tools.call_tool("run_python_code", "{not json")
    assert r.is_error and "not valid JSON" in r.text
    r = tools.call_tool("no_such_tool", {})
    assert r.is_error and "no tool named 'no_such_tool'" in r.text


def test_environment_packages_status_and_reset(sandbox, tools):
    assert tools.call_tool("get_environment_variable", {"key": "GREETING"}).text == "GREETING is not set"
    tools.call_tool("set_environment_variable", {"key": "GREETING", "value": "hi there"})
    assert tools.call_tool("get_environment_variable", {"key": "GREETING"}).text == "hi there"
    assert tools.call_tool("run_shell_command", {"command": "echo $GREETING"}).text == "hi there"
    assert tools.call_tool("set_environment_variable", {"key": "1BAD", "value": "x"}).is_error
    assert "not installed" in tools.call_tool("check_package_installed", {"package": "six"}).text
    status = tools.call_tool("get_sandbox_status").data
    assert status["sandbox_id"] == sandbox.sandbox_id and status["template"] == "base"
    usage = tools.call_tool("get_resource_usage").data
    assert usage["memory_total"] > 0
    old = sandbox.sandbox_id
    r = tools.call_tool("reset_sandbox")
    assert r.data["old_sandbox_id"] == old and sandbox.sandbox_id == r.data["sandbox_id"] != old
    assert tools.call_tool("get_environment_variable", {"key": "GREETING"}).text == "GREETING is not set"


def test_unbound_tools_use_a_temporary_sandbox(conn):
    before = {s.sandbox_id for s in running(conn)}
    r = call_tool("run_shell_command", {"command": "whoami"}, **conn)
    assert r.text == "user"
    assert {s.sandbox_id for s in running(conn)} == before  # killed after the call


def test_subsets_and_binding(sandbox):
    alphora = Toolset(sandbox, ALPHORA_TOOLS)
    assert alphora.names == ALPHORA_TOOLS and len(alphora.openai_tools()) == 20
    code = alphora.select(categories=["code"])
    assert code.names == ["run_python_code", "run_python_file", "run_shell_command"]  # Alphora's
    assert bind(sandbox).sandbox is sandbox
    with pytest.raises(TypeError):
        AsyncToolset(sandbox)


async def test_async_toolset(conn):
    from sandlot import AsyncSandbox

    async with await AsyncSandbox.create(**conn) as sbx:
        tools = bind(sbx, categories="code")
        assert isinstance(tools, AsyncToolset)
        r = await tools.call_tool("run_python_code", {"code": "print(40 + 2)"})
        assert r.text == "42"
        r = await tools.run_shell_command(command="echo $((6 * 7))")
        assert json.loads(json.dumps(r.to_mcp()))["content"] == [{"type": "text", "text": "42"}]
