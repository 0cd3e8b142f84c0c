"""Sessions (`sandbox.session()`): stateful shells, on both surfaces, in real sandboxes, and their
REST routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest

import pytest_asyncio

from sandlot import (AlreadyExists, AsyncSandbox, CommandExitError, CommandResult, NotFound, Sandbox, SessionInfo,
                     TimeoutError)
from sdk_support import maybe


@pytest.fixture(scope="module", params=["sync", "async"])
def surface(request) -> str:
    return request.param


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox(server, surface):
    """One sandbox per surface for the module: sessions are what is tested, and each test makes its own."""
    cls = Sandbox if surface == "sync" else AsyncSandbox
    sbx = await maybe(cls.create(api_url=server.url, api_key=server.api_key))
    yield sbx
    await maybe(sbx.kill())
    await maybe(sbx.close())


async def test_state_carries_between_commands(sandbox):
    session = await maybe(sandbox.session())
    for cmd in ("cd /tmp", "export DEBUG=1", "python3 -m venv --without-pip venv-$$", "source venv-$$/bin/activate",
                "greet() { echo hello $1; }", "alias ll='ls -la'", "declare -a arr=(1 2 3)"):
        assert (await maybe(session.exec(cmd))).exit_code == 0, cmd
    result = await maybe(session.exec("pwd; echo $DEBUG; greet you; echo ${arr[2]}; command -v python; ll -d ."))
    assert isinstance(result, CommandResult)
    lines = result.stdout.splitlines()
    assert lines[:4] == ["/tmp", "1", "hello you", "3"] and lines[5].endswith(" .")
    assert lines[4].startswith("/tmp/venv-") and lines[4].endswith("/bin/python")
    assert await maybe(session.cwd()) == "/tmp"
    assert await maybe(session.delete())
    assert not await maybe(session.delete())


async def test_results_exit_codes_and_check(sandbox):
    session = await maybe(sandbox.session())
    result = await maybe(session.exec("echo out; echo err >&2; exit_code() { return 3; }; exit_code"))
    assert (result.stdout, result.stderr, result.exit_code, result.success) == ("out\n", "err\n", 3, False)
    assert 0 < result.duration < 10
    assert (await maybe(session.exec("echo $?"))).stdout == "3\n"
    with pytest.raises(CommandExitError) as info:
        await maybe(session.exec("echo partial; false", check=True))
    assert (info.value.exit_code, info.value.stdout) == (1, "partial\n")
    await maybe(session.delete())


async def test_background_jobs_stay_and_their_output_stays_out(sandbox, surface):
    session = await maybe(sandbox.session())
    port = 8123 if surface == "sync" else 8124
    start = await maybe(session.exec(f"python3 -m http.server {port} >/dev/null 2>&1 & "
                                     "(sleep 0.3; while :; do echo noise; sleep 0.05; done) & echo started"))
    assert start.stdout == "started\n" and start.stderr == ""
    for _ in range(5):
        result = await maybe(session.exec("sleep 0.1; echo clean"))
        assert (result.stdout, result.stderr) == ("clean\n", "")
    served = await maybe(session.exec("for i in $(seq 50); do python3 -c \"import urllib.request as u; "
                                      f"print(u.urlopen('http://127.0.0.1:{port}/').status)\" 2>/dev/null && break; "
                                      "sleep 0.1; done"))
    assert served.stdout == "200\n"
    await maybe(session.delete())


async def test_stdin(sandbox):
    session = await maybe(sandbox.session())
    started = time.monotonic()
    assert (await maybe(session.exec("cat; echo done"))).stdout == "done\n"
    assert time.monotonic() - started < 10
    assert (await maybe(session.exec("tr a-z A-Z", stdin="shout\n"))).stdout == "SHOUT\n"
    assert (await maybe(session.exec("od -An -tx1", stdin=b"\x00\xff"))).stdout.split() == ["00", "ff"]
    await maybe(session.delete())


async def test_timeout_keeps_the_session(sandbox):
    session = await maybe(sandbox.session(cwd="/tmp", envs={"KEEP": "me"}))
    await maybe(session.exec("export MORE=too"))
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await maybe(session.exec("echo begun; sleep 30; echo never", timeout=0.5))
    assert time.monotonic() - started < 10
    assert info.value.details["result"].stdout == "begun\n"
    result = await maybe(session.exec("echo $KEEP $MORE; pwd"))
    assert result.stdout == "me too\n/tmp\n"
    await maybe(session.delete())


async def test_streaming_callbacks(sandbox, surface):
    session = await maybe(sandbox.session())
    seen = []
    if surface == "async":
        async def on_stdout(text):
            seen.append(("out", text, time.monotonic()))
    else:
        def on_stdout(text):
            seen.append(("out", text, time.monotonic()))
    result = await maybe(session.exec("echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c", on_stdout=on_stdout,
                                      on_stderr=lambda text: seen.append(("err", text, time.monotonic()))))
    assert [(k, t) for k, t, _ in seen] == [("out", "a\n"), ("err", "b\n"), ("out", "c\n")]
    assert seen[2][2] - seen[0][2] > 0.4  # each line came as it was printed
    assert (result.stdout, result.stderr, result.exit_code) == ("a\nc\n", "b\n", 0)
    with pytest.raises(TimeoutError):
        await maybe(session.exec("sleep 30", timeout=0.3, on_stdout=on_stdout))
    assert (await maybe(session.exec("echo ok", on_stdout=on_stdout))).stdout == "ok\n"
    await maybe(session.delete())


async def test_files_relative_to_the_session_cwd(sandbox):
    session = await maybe(sandbox.session(cwd="/tmp"))
    await maybe(session.exec("mkdir -p files-$$ && cd files-$$"))
    await maybe(session.files.write("a.txt", "first"))
    assert (await maybe(session.exec("cat a.txt"))).stdout == "first"
    await maybe(session.exec("mkdir -p sub && cd sub"))
    await maybe(session.files.write("b.txt", "second"))
    here = await maybe(session.cwd())
    assert here.startswith("/tmp/files-") and here.endswith("/sub")
    assert await maybe(sandbox.files.read(here + "/b.txt")) == "second"
    assert await maybe(session.files.read("../a.txt")) == "first"
    assert await maybe(session.files.exists("b.txt"))
    assert [e.name for e in await maybe(session.files.list())] == ["b.txt"]
    await maybe(session.files.remove("b.txt"))
    assert not await maybe(session.files.exists(here + "/b.txt"))
    await maybe(session.delete())


async def test_create_get_list_delete_by_id(sandbox, surface):
    session = await maybe(sandbox.create_session(id="user-123", cwd="/tmp", envs={"USER_ID": "123"}))
    assert session.id == "user-123"
    with pytest.raises(AlreadyExists):
        await maybe(sandbox.session(id="user-123"))
    again = await maybe(sandbox.get_session("user-123"))
    assert (await maybe(again.exec("echo $USER_ID"))).stdout == "123\n"
    infos = await maybe(sandbox.list_sessions())
    info = next(i for i in infos if i.id == "user-123")
    assert isinstance(info, SessionInfo) and info.cwd == "/tmp" and info.envs == {"USER_ID": "123"}
    assert info.user == "user" and not info.busy and info.created_at is not None
    root = await maybe(sandbox.session(user="root"))
    assert (await maybe(root.exec("whoami"))).stdout == "root\n"
    assert await maybe(sandbox.delete_session("user-123"))
    assert not await maybe(sandbox.delete_session("user-123"))
    with pytest.raises(NotFound):
        await maybe(sandbox.get_session("user-123"))
    with pytest.raises(NotFound):
        await maybe(again.exec("true"))
    if surface == "sync":
        with sandbox.session() as scoped:
            scoped_id = scoped.id
    else:
        async with await sandbox.session() as scoped:
            scoped_id = scoped.id
    assert scoped_id not in {i.id for i in await maybe(sandbox.list_sessions())}
    await maybe(root.delete())


async def test_exit_ends_the_session(sandbox):
    session = await maybe(sandbox.session())
    assert (await maybe(session.exec("exit 5"))).exit_code == 5
    with pytest.raises(NotFound):
        await maybe(session.exec("true"))


async def test_rest_routes_answer_errors_with_their_status(server, sandbox):
    headers = {"X-API-KEY": server.api_key}
    base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/sessions"
    async with httpx.AsyncClient(headers=headers) as http:
        assert (await http.post(base, json={"id": "bad id"})).status_code == 400
        assert (await http.post(base, json={"cwd": "/no/such/dir"})).status_code == 400
        assert (await http.post(base + "/nope/exec", json={"cmd": "true"})).status_code == 404
        assert (await http.post(base + "/nope/exec", json={"cmd": "true", "stream": True})).status_code == 404
        assert (await http.post(base + "/nope/exec", json={})).status_code == 400
        assert (await http.get(base + "/nope")).status_code == 404
        assert (await http.delete(base + "/nope")).status_code == 404
        assert (await http.get(base, headers={"X-API-KEY": "wrong"})).status_code == 401
        made = await http.post(base, json={"id": "rest"})
        assert made.status_code == 201 and made.json()["sessionID"] == "rest"
        assert made.headers["location"].endswith("/sessions/rest")
        ran = await http.post(base + "/rest/exec", json={"cmd": "printf '%s' \"$(cat)\"", "stdin": "in"})
        assert ran.json() == {"stdout": "in", "stderr": "", "exitCode": 0, "timedOut": False,
                              "interrupted": False, "shellExited": False, "truncated": False}
        assert (await http.post(base + "/rest/exec", json={"cmd": "true", "stdinBase64": "%%%"})).status_code == 400
        for timeout in (-1, 1e308, "soon"):  # 1e308 s in ms is no integer (was a 500)
            assert (await http.post(base + "/rest/exec", json={"cmd": "true", "timeout": timeout})).status_code == 400
        assert (await http.delete(base + "/rest")).status_code == 204
        assert (await http.get(f"{server.url}/sandboxes/nosuchsandbox/sessions")).status_code == 404


async def test_a_cwd_that_is_not_utf8_is_shown_with_replacement_characters(server, sandbox):
    """A shell's directory is whatever the sandbox made it: a name that is not UTF-8 comes with U+FFFD
    (get and list answered 500: a JSON answer is UTF-8)."""
    base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/sessions"
    async with httpx.AsyncClient(headers={"X-API-KEY": server.api_key}, timeout=60) as http:
        sid = (await http.post(base, json={})).json()["sessionID"]
        ran = await http.post(f"{base}/{sid}/exec", json={"cmd": "mkdir -p /tmp/bad-$'\\xff' && cd /tmp/bad-$'\\xff'"})
        assert ran.json()["exitCode"] == 0, ran.text
        one = await http.get(f"{base}/{sid}")
        assert one.status_code == 200 and one.json()["cwd"] == "/tmp/bad-\ufffd", (one.status_code, one.text)
        listed = await http.get(base)
        assert listed.status_code == 200 and "/tmp/bad-\ufffd" in [s["cwd"] for s in listed.json()], listed.text
        assert (await http.delete(f"{base}/{sid}")).status_code == 204


async def test_a_string_that_is_not_text_is_refused(server, sandbox):
    """JSON can escape a lone surrogate ("\\udcff"), which no UTF-8 text holds: such a body is a 400
    (envs, cwd, user and stdin were 500s); a surrogate pair is a character like any other."""
    base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/sessions"
    headers = {"X-API-KEY": server.api_key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        made = (await http.post(base, content='{"envs": {"A": "\\ud83d\\ude00"}}')).json()
        assert made["envs"] == {"A": "\U0001f600"}, made
        sid = made["sessionID"]
        for path, body in [(base, '{"envs": {"A": "\\udcff"}}'), (base, '{"cwd": "/tmp/\\udcff"}'),
                           (base, '{"user": "\\udcff"}'), (f"{base}/{sid}/exec", '{"cmd": "cat", "stdin": "\\udcff"}')]:
            r = await http.post(path, content=body)
            assert r.status_code == 400 and "not text" in r.json()["message"], (body, r.status_code, r.text)
        assert (await http.delete(f"{base}/{sid}")).status_code == 204


def _rss(server) -> int:
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


async def test_a_command_whose_client_left_is_not_held(server, sandbox):
    """A client that leaves ends its command's request, streamed or not: one waiting for its turn
    leaves the queue, one running is interrupted. The server held each such request, its body
    included, until the command ended (with timeout 0: never), and the command ran on."""
    base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/sessions"
    headers = {"X-API-KEY": server.api_key}
    big = json.dumps({"cmd": "true #" + "x" * (3 << 20), "timeout": 0})
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        sid = (await http.post(base, json={})).json()["sessionID"]

        async def busy() -> bool:
            return (await http.get(f"{base}/{sid}")).json()["busy"]

        async with httpx.AsyncClient(headers=headers, timeout=None) as holder:
            running = asyncio.ensure_future(holder.post(f"{base}/{sid}/exec", json={"cmd": "sleep infinity",
                                                                                    "timeout": 0}))
            for _ in range(200):
                if await busy():
                    break
                await asyncio.sleep(0.05)
            before = _rss(server)
            for stream in [False, True] * 10:  # 60 MiB of commands waiting for their turn, given up
                with pytest.raises(httpx.ReadTimeout):
                    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=0.3)) as quick:
                        await quick.post(f"{base}/{sid}/exec", content=big[:-1] + f', "stream": {json.dumps(stream)}}}',
                                         headers={"Content-Type": "application/json"})
            await asyncio.sleep(0.5)
            grown = _rss(server) - before
            running.cancel()  # and the running command's client leaves
            with contextlib.suppress(asyncio.CancelledError):
                await running
        assert grown < 40 << 20, f"20 commands given up grew the server by {grown >> 20} MiB"
        for _ in range(200):
            if not await busy():
                break
            await asyncio.sleep(0.05)
        assert not await busy(), "the command whose client left still runs"
        assert (await http.post(f"{base}/{sid}/exec", json={"cmd": "echo free"})).json()["stdout"] == "free\n"
        assert (await http.delete(f"{base}/{sid}")).status_code == 204
