"""Sandbox lifecycle through the SDK, on both surfaces, against a real server."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from sandlot import (
    AsyncSandbox, AuthenticationError, InvalidArgument, Limits, NotFound, Sandbox, SandboxNotRunning,
)
from sdk_support import collect, maybe


async def test_create_info_kill(sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(timeout=120, metadata={"owner": "tests"}, envs={"GREETING": "hello"}, **conn))
    try:
        info = await maybe(sbx.get_info())
        assert (info.sandbox_id, info.template_id, info.state) == (sbx.sandbox_id, "base", "running")
        assert info.metadata == {"owner": "tests"}
        assert (info.end_at - info.started_at).total_seconds() == pytest.approx(120, abs=2)
        assert (await maybe(sbx.commands.run("echo $GREETING"))).stdout == "hello\n"
        assert await maybe(sbx.is_running()) is True
    finally:
        assert await maybe(sbx.kill()) is True
    assert await maybe(sbx.kill()) is False
    assert await maybe(sbx.is_running()) is False
    with pytest.raises(SandboxNotRunning):
        await maybe(sbx.commands.run("true"))


async def test_class_level_calls_by_id(sdk, sandbox):
    cls, conn = sdk
    sid = sandbox.sandbox_id
    assert (await maybe(cls.get_info(sid, **conn))).sandbox_id == sid
    await maybe(cls.set_timeout(sid, 30, **conn))
    end = (await maybe(cls.get_info(sid, **conn))).end_at
    assert (end - datetime.now(timezone.utc)).total_seconds() == pytest.approx(30, abs=3)
    assert (await maybe(cls.get_metrics(sid, **conn)))[0].mem_total > 0
    assert await maybe(cls.kill(sid, **conn)) is True
    with pytest.raises(NotFound):
        await maybe(cls.connect(sid, **conn))


async def test_connect_from_another_object(sdk, sandbox):
    cls, conn = sdk
    await maybe(sandbox.files.write("/tmp/marker", "here"))
    other = await maybe(cls.connect(sandbox.sandbox_id, **conn))
    assert (await maybe(other.commands.run("cat /tmp/marker"))).stdout == "here"
    await maybe(other.close())
    with pytest.raises(NotFound):
        await maybe(cls.connect("nosuchsandbox", **conn))


async def test_list_filters_and_pages(sdk):
    cls, conn = sdk
    suite = uuid.uuid4().hex
    created = [await maybe(cls.create(metadata={"suite": suite, "i": str(i)}, **conn)) for i in range(3)]
    try:
        pages = cls.list(metadata={"suite": suite}, limit=2, **conn)
        first = await maybe(pages.next_items())
        assert len(first) == 2 and pages.has_next
        second = await maybe(pages.next_items())
        assert len(second) == 1 and not pages.has_next
        everything = await collect(cls.list(metadata={"suite": suite}, **conn))
        assert [i.sandbox_id for i in everything] == [s.sandbox_id for s in reversed(created)]  # newest first
        only = await collect(cls.list(metadata={"suite": suite, "i": "1"}, **conn))
        assert [i.sandbox_id for i in only] == [created[1].sandbox_id]
        made = [s.sandbox_id for s in created]
        for order, expected in (("asc", made), ("desc", made[::-1])):
            pages = cls.list(metadata={"suite": suite}, limit=2, order=order, **conn)
            first, second = await maybe(pages.next_items()), await maybe(pages.next_items())
            assert not pages.has_next
            assert [[i.sandbox_id for i in p] for p in (first, second)] == [expected[:2], expected[2:]], order
            assert [i.sandbox_id for i in await collect(cls.list(metadata={"suite": suite}, order=order, **conn))
                    ] == expected
        with pytest.raises(InvalidArgument, match="order"):
            await maybe(cls.list(metadata={"suite": suite}, order="sideways", **conn).next_items())
        assert await collect(cls.list(metadata={"suite": suite}, state="paused", **conn)) == []
    finally:
        for sbx in created:
            await maybe(sbx.kill())
    assert await collect(cls.list(metadata={"suite": suite}, **conn)) == []


async def test_list_metadata_values_are_matched_exactly(sdk):
    """Values with spaces, '%', '&', '=' or '+' select exactly the sandboxes that carry them (the
    SDK encodes the filter as the e2b SDK does, which the server decodes)."""
    cls, conn = sdk
    suite = uuid.uuid4().hex
    odd = {"note": "a b", "pct": "a%20b", "amp": "x&y=z", "plus": "1+1", "name": "Zoë/ü", "key with space": "v"}
    a = await maybe(cls.create(metadata={"suite": suite, **odd}, **conn))
    # the look-alikes: what a value would become if decoded once too often or too seldom
    b = await maybe(cls.create(metadata={"suite": suite, "note": "a%20b", "pct": "a b", "amp": "x",
                                         "y": "z", "plus": "1 1"}, **conn))
    try:
        async def listed(**meta) -> set[str]:
            return {i.sandbox_id for i in await collect(cls.list(metadata={"suite": suite, **meta}, **conn))}

        for key, value in odd.items():
            assert await listed(**{key: value}) == {a.sandbox_id}, (key, value)
        assert await listed(**odd) == {a.sandbox_id}
        assert await listed(note="a%20b", pct="a b", y="z") == {b.sandbox_id}
        assert await listed(plus="1 1") == {b.sandbox_id}
        assert await listed(amp="x") == {b.sandbox_id}
        assert await listed() == {a.sandbox_id, b.sandbox_id}
    finally:
        for sbx in (a, b):
            await maybe(sbx.kill())


async def test_limits(sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(limits=Limits(memory_mb=256, cpu_count=1, pids=128), **conn))
    try:
        info = await maybe(sbx.get_info())
        assert info.memory_mb == 256 and info.cpu_count == 1
    finally:
        await maybe(sbx.kill())
    with pytest.raises(InvalidArgument, match="memory_mb"):
        await maybe(cls.create(limits={"memory_mb": 1}, **conn))
    with pytest.raises(InvalidArgument, match="unknown limit"):
        await maybe(cls.create(limits={"gpus": 1}, **conn))


async def test_pause_and_resume(sdk, sandbox):
    await maybe(sandbox.files.write("/tmp/state", "kept"))
    assert await maybe(sandbox.pause()) is True
    assert await maybe(sandbox.pause()) is False
    assert await maybe(sandbox.is_running()) is False
    assert (await maybe(sandbox.get_info())).state == "paused"
    for call in (lambda: sandbox.commands.run("true"), lambda: sandbox.files.read("/tmp/state")):
        with pytest.raises(SandboxNotRunning, match=rf"sandbox {sandbox.sandbox_id} is paused: resume it with "
                                                    r"sandbox.resume\(\)") as failed:
            await maybe(call())
        assert "not found" not in str(failed.value)
    await maybe(sandbox.resume())
    assert await maybe(sandbox.is_running()) is True
    assert await maybe(sandbox.files.read("/tmp/state")) == "kept"


async def test_wrong_api_key(sdk):
    cls, conn = sdk
    with pytest.raises(AuthenticationError):
        await maybe(cls.create(api_url=conn["api_url"], api_key="wrong"))
    with pytest.raises(AuthenticationError):
        await maybe(cls.list(api_url=conn["api_url"], api_key="wrong").next_items())


async def test_environment_configures_the_client(server, monkeypatch, surface):
    monkeypatch.setenv("SANDLOT_API_URL", server.url)
    monkeypatch.setenv("SANDLOT_API_KEY", server.api_key)
    cls = Sandbox if surface == "sync" else AsyncSandbox
    sbx = await maybe(cls.create())
    assert sbx.api_url == server.url
    assert await maybe(cls.kill(sbx.sandbox_id)) is True


def test_context_manager_sync(server):
    with Sandbox.create(api_url=server.url, api_key=server.api_key) as sbx:
        assert sbx.commands.run("echo in").stdout == "in\n"
    assert sbx.is_running() is False


async def test_context_manager_async(server):
    async with await AsyncSandbox.create(api_url=server.url, api_key=server.api_key) as sbx:
        assert (await sbx.commands.run("echo in")).stdout == "in\n"
    assert await sbx.is_running() is False
