"""SandboxService on a real server: seed 003's SandboxService examples translated, plus what
Alphora's SandboxManager offers (get_or_create, destroy_all, cleanup_idle, health, totals)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid

import pytest

from sandlot import AsyncSandbox, ResourceExhausted, Sandbox
from sandlot import AsyncSandboxService, SandboxService
from sandlot.tools import bind


@pytest.fixture
def service(conn):
    svc = SandboxService(**conn, namespace="test-" + uuid.uuid4().hex[:8], idle_timeout=600)
    yield svc
    svc.release_all()
    svc.stop()


def test_seed_003_connect_reuses_the_same_sandbox(service):
    """connect(session_id, user_id, sandbox_types) twice: the second sees the first's variable."""
    [code_sandbox] = service.connect(session_id="session_123", user_id="user_12345", types=["code"])
    tools = bind(code_sandbox, ["run_ipython_cell", "run_shell_command"])
    assert tools.run_ipython_cell(code="print('Hello, World!')").text == "Hello, World!"
    tools.run_ipython_cell(code="a = 1")
    [again] = service.connect(session_id="session_123", user_id="user_12345", types=["code"])
    assert again.sandbox_id == code_sandbox.sandbox_id
    assert bind(again).run_ipython_cell(code="print(a)").text == "1"  # the variable survived
    assert tools.run_shell_command(command="whoami").text == "user"
    [other] = service.connect(session_id="session_123", user_id="someone_else")
    assert other.sandbox_id != code_sandbox.sandbox_id and other.template_id == "base"


def test_key_lives_in_metadata_across_processes(service, conn):
    [sandbox] = service.connect("shared", "u1")
    sandbox.files.write("/tmp/state", "kept")
    script = textwrap.dedent(f"""
        from sandlot import SandboxService
        service = SandboxService(api_url={conn['api_url']!r}, api_key={conn['api_key']!r},
                                 namespace={service.namespace!r})
        [sandbox] = service.connect("shared", "u1")
        print(sandbox.sandbox_id, sandbox.files.read("/tmp/state"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [sandbox.sandbox_id, "kept"]


def test_dead_sandbox_is_replaced(service, conn):
    [first] = service.connect("s", "u")
    Sandbox.kill(first.sandbox_id, **conn)
    [second] = service.connect("s", "u")
    assert second.sandbox_id != first.sandbox_id and second.commands.run("true").success
    assert [i.sandbox_id for i in service.list()] == [second.sandbox_id]


def test_release_per_session_and_all(service):
    a = service.get_or_create("s1", "u1")
    b = service.get_or_create("s1", "u2")
    c = service.get_or_create("s2", "u1")
    assert service.release("s1", user_id="u1") == [a.sandbox_id]
    assert {i.sandbox_id for i in service.list()} == {b.sandbox_id, c.sandbox_id}
    assert service.get("s1", "u1") is None and service.get("s1", "u2").sandbox_id == b.sandbox_id
    assert sorted(service.destroy_all()) == sorted([b.sandbox_id, c.sandbox_id])
    assert service.list() == []


def test_cap_health_totals_and_idle_cleanup(conn):
    service = SandboxService(**conn, namespace="cap-" + uuid.uuid4().hex[:8], idle_timeout=600, max_sandboxes=2)
    try:
        service.connect("s1")
        service.connect("s2")
        with pytest.raises(ResourceExhausted, match="max_sandboxes=2"):
            service.connect("s3")
        health = service.health_check_all()
        assert [(h["session_id"], h["alive"], h["state"]) for h in health] == [("s1", True, "running"),
                                                                               ("s2", True, "running")]
        assert all(h["idle_seconds"] < 60 for h in health)
        totals = service.get_total_resource_usage()
        assert totals["sandboxes"] == 2 and totals["mem_used"] > 0
        assert service.cleanup_idle(max_idle_seconds=3600) == []
        assert len(service.cleanup_idle(max_idle_seconds=0)) == 2
        assert service.list() == []
    finally:
        service.release_all()
        service.stop()


async def test_async_service_concurrent_connects_share_one_sandbox(conn):
    async with AsyncSandboxService(**conn, namespace="async-" + uuid.uuid4().hex[:8], idle_timeout=300) as service:
        await service.start()
        try:
            results = await asyncio.gather(*(service.get_or_create("same", "user") for _ in range(4)))
            assert len({s.sandbox_id for s in results}) == 1 and isinstance(results[0], AsyncSandbox)
            [listed] = await service.list()
            assert listed.metadata["sandlot-session"] == "same" and listed.metadata["sandlot-user"] == "user"
            info = await results[0].get_info()
            assert 250 < (info.end_at - info.started_at).total_seconds() <= 310  # the idle timeout
        finally:
            await service.release_all()
