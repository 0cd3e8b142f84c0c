"""Smaller E2B behaviours the official SDKs rely on (issue 14): the error of a command streaming
when its sandbox is killed, a multipart file part without a filename, a file written under
parents the user could not create, and a recursive watch reporting a nested write as a flat
watch reports it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox, SandboxException
from e2b_support import SDK_VERSION, envd_headers
from support import access_token, unique
from packaging.version import Version

END_OF_LIFE = "The sandbox was killed or reached its end of life while the request was in flight"
# The stream ends `unavailable`, then /health answers 502: the 2.5x+ SDKs probe it and say
# END_OF_LIFE, as with E2B; 2.4x report an `unavailable` stream as a timeout, with its message.
OLD_SDK = SDK_VERSION < Version("2.50")


def assert_gone_while_streaming(e: Exception) -> None:
    if OLD_SDK:
        assert type(e).__name__ == "TimeoutException" and "stopped running" in str(e), repr(e)
    else:
        assert type(e).__name__ == "SandboxNotRunningException" and END_OF_LIFE in str(e), repr(e)


def kill_later(sandbox_id: str, delay: float = 1.0) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), Sandbox.kill(sandbox_id)))
    t.start()
    return t


def test_a_command_streaming_when_its_sandbox_is_killed(make_sandbox):
    sbx = make_sandbox()
    t = kill_later(sbx.sandbox_id)
    with pytest.raises(SandboxException) as err:
        sbx.commands.run("for i in $(seq 100); do echo $i; sleep 0.2; done", on_stdout=lambda _: None)
    t.join()
    assert_gone_while_streaming(err.value)


async def test_an_async_command_when_its_sandbox_is_killed(sdk_env):
    sbx = await AsyncSandbox.create(timeout=60)
    handle = await sbx.commands.run("sleep 100", background=True)
    t = kill_later(sbx.sandbox_id)
    with pytest.raises(SandboxException) as err:
        await handle.wait()
    t.join()
    assert_gone_while_streaming(err.value)


def test_a_multipart_file_part_without_a_filename(sandbox, server, workdir):
    headers = envd_headers(sandbox.sandbox_id, access_token(server, sandbox.sandbox_id))
    r = httpx.post(f"{server.url}/files", params={"path": f"{workdir}/nofilename.txt"}, headers=headers,
                   files={"file": (None, b"taken from the query's path")})
    assert r.status_code == 200, r.text
    assert r.json()[0]["path"] == f"{workdir}/nofilename.txt"
    assert sandbox.files.read(f"{workdir}/nofilename.txt") == "taken from the query's path"
    # without a path in the query there is nowhere to put it
    r = httpx.post(f"{server.url}/files", headers=headers, files={"file": (None, b"x")})
    assert r.status_code == 400, r.text


def test_writing_under_parents_the_user_could_not_create(sandbox):
    top = "/" + unique("p")
    info = sandbox.files.write(f"{top}/deeper/a.txt", "made")
    assert info.path == f"{top}/deeper/a.txt"
    owners = sandbox.commands.run(f"stat -c '%U %a' {top} {top}/deeper {top}/deeper/a.txt").stdout.split("\n")
    assert owners[:3] == ["user 755", "user 755", "user 644"]
    # never through a link the user planted: /etc is not the user's to add to
    link = f"/home/user/{unique('to-etc')}"
    sandbox.commands.run(f"ln -s /etc {link}")
    with pytest.raises(SandboxException):
        sandbox.files.write(f"{link}/{unique('new')}/x", "no")
    with pytest.raises(SandboxException):  # and existing root-owned files stay out of reach
        sandbox.files.write("/etc/hostname", "no")
    assert sandbox.commands.run("sudo rm -rf " + top).exit_code == 0


def test_a_recursive_watch_reports_a_nested_write_as_a_flat_one(sandbox, workdir):
    def events(handle) -> list[tuple[str, str]]:
        time.sleep(0.3)
        return [(e.name, e.type.name) for e in handle.get_new_events()]

    sandbox.files.make_dir(f"{workdir}/flat")
    flat = sandbox.files.watch_dir(f"{workdir}/flat")
    try:
        sandbox.files.write(f"{workdir}/flat/f.txt", "x")
        flat_events = events(flat)
    finally:
        flat.stop()
    deep = sandbox.files.watch_dir(workdir, recursive=True)
    try:
        sandbox.files.write(f"{workdir}/a/b/c/f.txt", "x")  # its directories made by the write
        deep_events = events(deep)
        sandbox.files.write(f"{workdir}/a/b/c/g.txt", "x")  # in a directory watched already
        again = events(deep)
    finally:
        deep.stop()
    assert flat_events == [("f.txt", "CREATE"), ("f.txt", "WRITE")]
    assert [e for e in deep_events if e[0].endswith("f.txt")] == [("a/b/c/f.txt", "CREATE"), ("a/b/c/f.txt", "WRITE")]
    assert [e[0] for e in deep_events if not e[0].endswith("f.txt")] == ["a", "a/b", "a/b/c"]
    assert again == [("a/b/c/g.txt", "CREATE"), ("a/b/c/g.txt", "WRITE")]
