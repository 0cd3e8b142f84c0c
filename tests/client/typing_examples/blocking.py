"""Type-checked, not run: the blocking API as a user's script uses it (mypy --strict, pyright strict)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import assert_type

import sandlot
from sandlot import (
    Codebase, CodebaseFile, CommandHandle, CommandResult, EntryInfo, Execution, ExposedPort, FilesystemEvent, Limits,
    OutputMessage, PermissionRule, ProcessInfo, Sandbox, SandboxInfo, SecurityPolicy, Session, SessionInfo,
    SnapshotExport, SnapshotInfo, Volume, VolumeInfo, WatchHandle,
)


def on_line(text: str) -> None:
    print(text, end="")


def on_result(result: sandlot.Result) -> None:
    print(result.formats())


def main() -> None:
    with Sandbox.create(template="code-interpreter", timeout=120, metadata={"job": "demo"},
                        request_timeout=30) as sandbox:
        assert_type(sandbox, Sandbox)
        assert_type(sandbox.sandbox_id, str)
        result = sandbox.commands.run("echo hi", on_stdout=on_line, timeout=10)
        assert_type(result, CommandResult)
        print(result.stdout, result.exit_code, result.success, result.duration)
        handle = sandbox.commands.run("sleep 1; echo done", background=True)
        assert_type(handle, CommandHandle)
        for stdout, stderr, _ in handle:
            print(stdout or stderr or "", end="")
        assert_type(handle.wait(), CommandResult)
        assert_type(handle.exit_code, int | None)
        web = sandbox.commands.run("python3 -m http.server 8000", background=True, tag="web")
        assert_type(web, CommandHandle)
        assert_type(web.wait_for_log(re.compile(r"port (\d+)"), timeout=10), re.Match[str])
        web.wait_for_port(8000, timeout=10)
        assert_type(sandbox.commands.get_process("web"), ProcessInfo | None)
        assert_type(sandbox.commands.connect("web"), CommandHandle)
        url = sandbox.expose_port(8000, ttl=600)
        assert_type(url, str)
        assert_type(sandbox.list_exposed_ports(), list[ExposedPort])
        assert_type(sandbox.is_port_exposed(8000), bool)
        sandbox.unexpose_port(8000)

        sandbox.files.write("/tmp/a.txt", "hello")
        assert_type(sandbox.files.read("/tmp/a.txt"), str)
        assert_type(sandbox.files.read("/tmp/a.txt", format="bytes"), bytes)
        chunks = sandbox.files.read("/tmp/a.txt", format="stream")
        assert_type(chunks, Iterator[bytes])
        print(b"".join(chunks))
        entries = sandbox.files.list("/tmp")
        assert_type(entries, list[EntryInfo])
        print([e.name for e in entries if e.type is sandlot.FileType.FILE])
        watch = sandbox.files.watch_dir("/tmp", on_event=lambda e: print(e.name))
        assert_type(watch, WatchHandle)
        events = watch.get_new_events()
        assert_type(events, list[FilesystemEvent])
        watch.stop()

        term = sandbox.pty.create(cols=80, rows=24, on_data=lambda data: print(data.decode(), end=""))
        term.send_stdin(b"exit\n")
        print(term.wait().exit_code)

        def on_stdout(message: OutputMessage) -> None:
            print(message.line)

        execution = sandbox.run_code("1 + 1", on_stdout=on_stdout, on_result=on_result, request_timeout=5)
        assert_type(execution, Execution)
        print(execution.text, [r.chart for r in execution.results])
        context = sandbox.create_code_context(variables={"rows": [1, 2, 3]})
        print(sandbox.run_code("sum(rows)", context=context).text)
        print([p.name for p in sandbox.packages.install("tabulate")])

        info = sandbox.get_info()
        assert_type(info, SandboxInfo)
        print(info.state, info.metadata.get("job"))
        print(sandbox.get_metrics()[-1].cpu_used_pct)
        snapshot = sandbox.create_snapshot(name="ready", warm=True)
        assert_type(snapshot, SnapshotInfo)
        for child in sandbox.fork(count=2, timeout=60):
            if isinstance(child, Sandbox):
                print(child.commands.run("hostname").stdout)
            else:
                assert_type(child, sandlot.SandlotError)
        assert_type(Sandbox.fork("sbx", count=1), list[Sandbox | sandlot.SandlotError])
        assert_type(sandbox.pause(mode="filesystem"), bool)
        assert_type(Sandbox.pause("sbx", mode="full", request_timeout=5), bool)
        sandbox.resume(timeout=60)
        assert_type(Sandbox.list_snapshots(name="ready"), list[SnapshotInfo])
        exported = Sandbox.export_snapshot(snapshot.snapshot_id)
        assert_type(exported, SnapshotExport)
        assert_type(Sandbox.import_snapshot(exported.export_id, name="copy"), SnapshotInfo)
        assert_type(Sandbox.delete_snapshot(snapshot.snapshot_id), bool)

    volume = Volume.create("data", size_mb=64)
    assert_type(volume, Volume)
    assert_type(volume.name, str)
    with Sandbox.create(snapshot.snapshot_id, volume_mounts={"/data": volume, "/more": "other"}) as mounted:
        print(mounted.files.read("/data/x"))
    assert_type(Volume.list(), list[VolumeInfo])
    assert_type(Volume.destroy("data"), bool)

    # codebases, path permissions, the security policy, sessions
    codebase = Codebase.create("repo")
    assert_type(codebase, Codebase)
    assert_type(codebase.upload_file("/README.md", "hi").version, int)
    assert_type(codebase.list_files("/"), list[CodebaseFile])
    assert_type(Codebase.list(), list[Codebase])
    with Sandbox.create(codebase=codebase, preset="agent-safe", limits=Limits.minimal(),
                        permissions=[PermissionRule("/docs/**", "write"),
                                     {"pattern": "**/.env*", "permission": "none"}],
                        security=SecurityPolicy(allow_subprocess=False, blocked_paths=("/etc/shadow",))) as sandbox:
        assert_type(sandbox.get_permissions(), list[PermissionRule])
        assert_type(sandbox.set_permissions("read-only"), list[PermissionRule])
        assert_type(sandbox.commit(), Codebase)
        sandbox.discard()
        with sandbox.session(cwd="/workspace", envs={"A": "1"}) as session:
            assert_type(session, Session)
            assert_type(session.exec("cd src", timeout=5, on_stdout=on_line), CommandResult)
            assert_type(session.files.read("main.py"), str)
            assert_type(session.files.read("main.py", format="bytes"), bytes)
            assert_type(session.files.list("."), list[EntryInfo])
            assert_type(session.cwd(), str)
        assert_type(sandbox.list_sessions(), list[SessionInfo])
        assert_type(sandbox.get_session("s1"), Session)
        assert_type(sandbox.delete_session("s1"), bool)
    with Sandbox.from_local("./project", preset="read-only", exclude=(".git",)) as local:
        assert_type(local, Sandbox)
    assert_type(codebase.delete(), bool)

    for listed in Sandbox.list(metadata={"job": "demo"}, state="running"):
        assert_type(listed, SandboxInfo)
        assert_type(Sandbox.kill(listed.sandbox_id, request_timeout=10), bool)
    Sandbox.set_timeout("sbx", 60)
    print(Sandbox.get_info("sbx").template_id)

    try:
        Sandbox.connect("sbx").commands.run("sleep 5", timeout=1)
    except sandlot.CommandExitError as e:
        print(e.exit_code, e.stderr)
    except TimeoutError as e:  # the builtin: sandlot's timeouts are builtin TimeoutErrors too
        print(e)
    except sandlot.SandlotError as e:
        print(e.message, e.details)


if __name__ == "__main__":
    main()
