"""Type-checked, not run: the async API as a user's script uses it (mypy --strict, pyright strict)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import assert_type

import sandlot
from sandlot import (
    AsyncCodebase, AsyncCommandHandle, AsyncSandbox, AsyncSession, AsyncVolume, AsyncWatchHandle, CommandResult,
    Execution, ExposedPort, ProcessInfo, SandboxInfo, SnapshotInfo,
)


async def on_line(text: str) -> None:  # callbacks may be coroutine functions
    print(text, end="")


async def main() -> None:
    async with await AsyncSandbox.create(timeout=120, limits={"memory_mb": 256}, request_timeout=30) as sandbox:
        assert_type(sandbox, AsyncSandbox)
        result = await sandbox.commands.run("echo hi", on_stdout=on_line)
        assert_type(result, CommandResult)
        handle = await sandbox.commands.run("sleep 1", background=True, stdin=True)
        assert_type(handle, AsyncCommandHandle)
        await handle.send_stdin("input\n")
        async for stdout, stderr, pty in handle:
            print(stdout, stderr, pty)
        assert_type(await handle.wait(), CommandResult)
        web = await sandbox.commands.run("python3 -m http.server 8000", background=True, tag="web")
        assert_type(web, AsyncCommandHandle)
        print((await web.wait_for_log(r"port (\d+)")).group(1))
        await sandbox.wait_for_port(8000, timeout=10, request_timeout=5)
        assert_type(await sandbox.commands.get_process("web"), ProcessInfo | None)
        assert_type(await sandbox.expose_port(8000), str)
        assert_type(await sandbox.list_exposed_ports(), list[ExposedPort])

        assert_type(await sandbox.files.read("/etc/hostname"), str)
        chunks = await sandbox.files.read("/etc/hostname", format="stream")
        assert_type(chunks, AsyncIterator[bytes])
        async for chunk in chunks:
            print(len(chunk))
        watch = await sandbox.files.watch_dir("/tmp", recursive=True)
        assert_type(watch, AsyncWatchHandle)
        async for event in watch:
            print(event.type.value, event.name)
            break
        await watch.stop()

        execution = await sandbox.run_code("x = 1\nx", timeout=10)
        assert_type(execution, Execution)
        print(execution.text, execution.error.name if execution.error else None)
        print(await sandbox.is_running(request_timeout=2))

        snapshot = await sandbox.create_snapshot(name="ready")
        assert_type(snapshot, SnapshotInfo)
        children = await sandbox.fork(count=2)
        assert_type(children, list[AsyncSandbox | sandlot.SandlotError])
        assert_type(await AsyncSandbox.create_snapshot("sbx", api_key="key"), SnapshotInfo)
        assert_type(await sandbox.pause(mode="filesystem"), bool)
        volume = await AsyncVolume.create("data")
        async with await AsyncSandbox.create(snapshot.snapshot_id, volume_mounts={"/data": volume}) as mounted:
            print(await mounted.files.read("/data/x"))

    async with await AsyncCodebase.create("repo") as codebase:
        await codebase.upload_dir("./project", exclude=(".git",))
        async with await AsyncSandbox.create(codebase=codebase, preset="view-only") as sandbox:
            async with await sandbox.session() as session:
                assert_type(session, AsyncSession)
                assert_type(await session.exec("ls", on_stdout=on_line), CommandResult)
                assert_type(await session.files.read("a.txt", format="stream"), AsyncIterator[bytes])
            assert_type(await sandbox.commit(), AsyncCodebase)

    paginator = AsyncSandbox.list(state=["running", "paused"], limit=10)
    while paginator.has_next:
        page = await paginator.next_items()
        assert_type(page, list[SandboxInfo])
    assert_type(await AsyncSandbox.kill("sbx", api_url="http://127.0.0.1:3000", api_key="key"), bool)
    try:
        await AsyncSandbox.connect("sbx", request_timeout=0.5)
    except sandlot.SandlotTimeoutError:
        pass


asyncio.run(main())
