"""Seed 002's AgentFense examples, translated to sandlot's SDK, one test each (the seed's section in
each docstring). AgentFense's `sandbox.run(cmd)` is sandlot's `sandbox.commands.run(cmd, cwd=...)`;
`make test` and `pytest` (not in the `base` template) become `python3 -m unittest`."""

from __future__ import annotations

import asyncio

import pytest
from perm_helpers import write_project

from sandlot import (AsyncSandbox, Codebase, CommandExitError, Limits, Permission, PermissionDenied,
                     PermissionRule, Sandbox, SandboxNotRunning, TimeoutError)

W = "/workspace"

ANALYZE = """\
import os
for root, dirs, files in os.walk("/workspace"):
    for name in sorted(files):
        path = os.path.join(root, name)
        try:
            open(path).read()
            print("read", path)
        except OSError as e:
            print("denied", path, e.errno)
"""
TEST = """\
import unittest

class T(unittest.TestCase):
    def test_ok(self):
        self.assertEqual(1 + 1, 2)

if __name__ == "__main__":
    unittest.main()
"""


@pytest.fixture
def my_project(tmp_path):
    return write_project(tmp_path / "my-project", {
        "analyze.py": ANALYZE, "test_app.py": TEST,
        "process.py": "open('/workspace/output/out.txt', 'w').write('done')\n",
        ".env": "SECRET=1\n", ".env.production": "SECRET=2\n", "secrets/db.key": "K\n", "server.pem": "P\n",
        "src/main.py": "print('main')\n", "output/.keep": "",
        "backend/manage.py": "import os, sys\n"
                             "print('DEBUG', os.environ.get('DEBUG'), 'venv', sys.prefix != sys.base_prefix)\n",
    })


def test_tldr_agent_safe(conn, my_project):
    """TL;DR / 面向 AI 应用开发者: from_local(..., preset="agent-safe"); run("python analyze.py")."""
    with Sandbox.from_local(my_project, preset="agent-safe", **conn) as sandbox:
        result = sandbox.commands.run("python3 analyze.py", cwd=W)
    lines = result.stdout.splitlines()
    assert "read /workspace/src/main.py" in lines and "read /workspace/analyze.py" in lines
    assert not any(s in result.stdout for s in (".env", "secrets", ".pem"))  # not even listed


def test_before_the_sdk_manual_steps(conn, my_project):
    """从"脚本"到"平台能力" (before): create a codebase, upload each file, rules, create, exec, destroy."""
    cb = Codebase.create("my-project", **conn)
    for path in sorted(p for p in my_project.rglob("*") if p.is_file()):
        cb.upload_file("/" + str(path.relative_to(my_project)), path.read_bytes())
    rules = [PermissionRule("**/*", Permission.READ), PermissionRule("**/.env*", Permission.NONE, priority=100)]
    sandbox = Sandbox.create(codebase=cb, permissions=rules, **conn)
    try:
        assert sandbox.commands.run("python3 src/main.py", cwd=W).stdout == "main\n"
        assert sandbox.commands.run("cat .env", cwd=W, check=False).exit_code != 0
    finally:
        sandbox.kill()
        cb.delete()


def test_three_lines(conn, my_project):
    """从"脚本"到"平台能力" (after): three lines, upload, run the tests, clean up."""
    with Sandbox.from_local(my_project, preset="agent-safe", **conn) as sandbox:
        result = sandbox.commands.run("python3 -m unittest -q test_app", cwd=W)
    assert "OK" in result.stderr


def test_high_level_sync(conn, my_project):
    """1. 高层同步 API: from_local(path); run("pytest"); print(result.stdout)."""
    with Sandbox.from_local(my_project, preset="read-only", **conn) as sandbox:
        result = sandbox.commands.run("python3 -m unittest test_app 2>&1", cwd=W)
    assert "Ran 1 test" in result.stdout


async def test_high_level_async(conn, my_project):
    """2. 高层异步 API: async with await AsyncSandbox.from_local("./project") as sandbox."""
    async with await AsyncSandbox.from_local(my_project, preset="read-only", **conn) as sandbox:
        result = await sandbox.commands.run("python3 -m unittest test_app 2>&1", cwd=W)
    assert "OK" in result.stdout


def test_low_level_shared_codebase(conn, my_project):
    """3. 低层 API: one codebase, upload_file, two sandboxes with different permissions, exec, destroy."""
    codebase = Codebase.create("shared-repo", **conn)
    codebase.upload_file("main.py", b"print('shared')\n")
    codebase.upload_file("notes.txt", b"notes\n")
    sandbox1 = Sandbox.create(codebase=codebase, permissions=[{"pattern": "**/*", "permission": "read"}], **conn)
    sandbox2 = Sandbox.create(codebase=codebase, permissions=[{"pattern": "**/*.py", "permission": "read"},
                                                              {"pattern": "**/*", "permission": "none",
                                                               "priority": -1}], **conn)
    try:
        assert sandbox1.commands.run("python3 main.py", cwd=W).stdout == "shared\n"
        assert sandbox1.commands.run("ls", cwd=W).stdout.split() == ["main.py", "notes.txt"]
        assert sandbox2.commands.run("ls", cwd=W).stdout.split() == ["main.py"]
    finally:
        sandbox1.kill()
        sandbox2.kill()
        codebase.delete()


def test_minimal_default_is_view_only(conn, my_project):
    """最小示例: from_local(path) uses view-only; run("ls -la") lists, reading fails."""
    with Sandbox.from_local(my_project, **conn) as sandbox:
        listing = sandbox.commands.run("ls -la", cwd=W).stdout
        assert "analyze.py" in listing and ".env" in listing  # view-only: every file is listed...
        assert sandbox.commands.run("cat analyze.py", cwd=W, check=False).exit_code != 0  # ...none is readable
        assert [r.pattern for r in sandbox.get_permissions()] == ["**/*"]


def test_custom_permissions(conn, my_project):
    """使用自定义权限: read-only + /output/** write + /secrets/** none; run("python process.py")."""
    with Sandbox.from_local(my_project, preset="read-only", permissions=[
            PermissionRule(pattern="/output/**", permission=Permission.WRITE),
            PermissionRule(pattern="/secrets/**", permission=Permission.NONE)], **conn) as sandbox:
        sandbox.commands.run("python3 process.py", cwd=W)
        assert sandbox.files.read(f"{W}/output/out.txt") == "done"
        assert not sandbox.files.exists(f"{W}/secrets/db.key")
        assert sandbox.files.read(f"{W}/.env") == "SECRET=1\n"  # read-only reads everything else


def test_resource_limits(conn, my_project):
    """使用 Docker 运行时和资源限制: agent-safe with ResourceLimits(memory 512 MB, pids 100), timeout 300
    (sandlot's namespace runtime stands in for Docker)."""
    with Sandbox.from_local(my_project, preset="agent-safe", limits=Limits(memory_mb=512, pids=100),
                            timeout=300, **conn) as sandbox:
        assert sandbox.get_info().memory_mb == 512
        result = sandbox.commands.run("python3 -m unittest -q test_app", cwd=W, timeout=300)
        assert result.exit_code == 0
        bomb = sandbox.commands.run("for i in $(seq 150); do sleep 5 & done; wait", cwd=W, check=False, timeout=60)
        assert bomb.exit_code != 0 and "fork" in bomb.stderr  # pids 100 holds


def test_stateful_session(conn, my_project):
    """有状态执行(Session): cd /workspace/backend; source venv/bin/activate; export DEBUG=1;
    python manage.py test."""
    with Sandbox.from_local(my_project, preset="development", **conn) as sandbox:
        sandbox.commands.run("python3 -m venv --without-pip /workspace/backend/venv")
        with sandbox.session() as session:
            assert session.exec("pwd").stdout == "/workspace\n"  # sessions start in the workspace
            session.exec("cd /workspace/backend")
            session.exec("source venv/bin/activate")
            session.exec("export DEBUG=1")
            result = session.exec("python manage.py test")
            assert result.stdout == "DEBUG 1 venv True\n"


async def test_ten_sandboxes_concurrently(conn, tmp_path):
    """异步:并发运行 10 个沙盒: gather(run_in_sandbox(p) for 10 projects)."""
    projects = [write_project(tmp_path / f"project-{i}", {"test_app.py": TEST}) for i in range(10)]

    async def run_in_sandbox(project_path):
        async with await AsyncSandbox.from_local(project_path, preset="read-only", **conn) as sandbox:
            return await sandbox.commands.run("python3 -m unittest -q test_app", cwd=W)

    results = await asyncio.gather(*(run_in_sandbox(p) for p in projects))
    assert [r.exit_code for r in results] == [0] * 10


def test_semantic_errors(conn, my_project):
    """错误处理哲学: timeout, non-zero exit, permission denied, sandbox not running."""
    sandbox = Sandbox.from_local(my_project, preset="agent-safe", **conn)
    with pytest.raises(TimeoutError):
        sandbox.commands.run("sleep 30", timeout=1)
    with pytest.raises(CommandExitError) as failed:
        sandbox.commands.run("python3 -c 'import sys; sys.exit(3)'", cwd=W)
    assert failed.value.exit_code == 3
    with pytest.raises(PermissionDenied):
        sandbox.files.write(f"{W}/src/main.py", "overwrite")
    sandbox.kill()
    with pytest.raises(SandboxNotRunning):
        sandbox.commands.run("true")
