"""Sandbox lifecycle through the official SDK: create, connect, info, list, timeouts, kill, expiry."""

from __future__ import annotations

import dataclasses
import inspect
import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from e2b import (
    NotFoundException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxQuery,
    SandboxState,
)
from e2b_support import assert_sandbox_gone_health, health
from support import kill_quietly, unique
from packaging.version import Version


def now() -> datetime:
    return datetime.now(UTC)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def ids(infos) -> list[str]:
    return [i.sandbox_id for i in infos]


def listed_ids(query: SandboxQuery, **kw) -> set[str]:
    """Every sandbox id the query lists, across all pages."""
    paginator = Sandbox.list(query=query, **kw)
    found: list[str] = []
    while paginator.has_next:
        found += ids(paginator.next_items())
    assert len(found) == len(set(found)), f"duplicates across pages: {found}"
    return set(found)


def assert_gone(server, sbx: Sandbox) -> None:
    """What a user sees once a sandbox is killed or expired (docs/e2b.md §2.1, §3.13)."""
    assert sbx.is_running() is False
    with pytest.raises(SandboxNotFoundException):
        sbx.get_info()
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(sbx.sandbox_id)
    # envd calls fail with the SDK's "sandbox not running" family, never hang or succeed
    with pytest.raises(SandboxException) as run_err:
        sbx.commands.run("echo still here", timeout=10)
    assert_not_running_error(run_err.value)
    with pytest.raises(SandboxException) as read_err:
        sbx.files.read("/etc/hostname", request_timeout=10)
    assert_not_running_error(read_err.value)
    assert_sandbox_gone_health(server, sbx.sandbox_id)
    running = listed_ids(SandboxQuery(state=[SandboxState.RUNNING]))
    assert sbx.sandbox_id not in running


def assert_not_running_error(err: Exception) -> None:
    import e2b

    not_running = getattr(e2b, "SandboxNotRunningException", None)
    if not_running is not None:  # 2.5x+: a dedicated exception (a TimeoutException subclass)
        assert isinstance(err, not_running), repr(err)
    else:  # 2.45.1: TimeoutException (or SandboxException) whose message names the cause
        message = str(err).lower()
        assert any(words in message for words in ("not found", "not running", "stopped running", "killed")), \
            repr(err)


def test_create_with_metadata_envs_and_timeout(make_sandbox):
    tag = unique()
    before = now()
    sbx = make_sandbox(timeout=123, metadata={"suite": "e2b", "tag": tag, "note": "a b&c=d/é"},
                       envs={"GREETING": "hello world", "QUOTED": "it's \"quoted\" $HOME"})
    after = now()
    assert sbx.sandbox_id and "-" not in sbx.sandbox_id and "." not in sbx.sandbox_id

    # sandbox-wide env vars are visible in every command, verbatim (no shell expansion)
    r = sbx.commands.run('printf "%s|%s" "$GREETING" "$QUOTED"')
    assert r.stdout == "hello world|it's \"quoted\" $HOME"
    # ... also for another user and in a later command
    assert sbx.commands.run("echo $GREETING", user="root").stdout == "hello world\n"
    # a command's own envs override the sandbox-wide ones, for that command only
    assert sbx.commands.run("echo $GREETING", envs={"GREETING": "override"}).stdout == "override\n"
    assert sbx.commands.run("echo $GREETING").stdout == "hello world\n"

    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id
    assert info.template_id and info.template_id == sbx.get_info().template_id
    assert info.metadata == {"suite": "e2b", "tag": tag, "note": "a b&c=d/é"}
    assert info.state == SandboxState.RUNNING
    assert info.cpu_count >= 1 and info.memory_mb > 0
    assert Version(info.envd_version) >= Version("0.6.4")
    assert before - timedelta(seconds=2) <= info.started_at <= after + timedelta(seconds=2)
    assert abs(seconds(info.end_at - info.started_at) - 123) < 2


def test_default_timeout_is_five_minutes(make_sandbox):
    sbx = make_sandbox(timeout=None)
    info = sbx.get_info()
    assert abs(seconds(info.end_at - info.started_at) - 300) < 2


def test_connect_by_id_extends_but_never_shortens(make_sandbox):
    sbx = make_sandbox(timeout=120)
    sbx.files.write("/home/user/from-first.txt", "written before connect")
    end0 = sbx.get_info().end_at

    # a shorter timeout on connect leaves the end time alone
    same = Sandbox.connect(sbx.sandbox_id, timeout=10)
    assert same.sandbox_id == sbx.sandbox_id
    end1 = same.get_info().end_at
    assert abs(seconds(end1 - end0)) < 1, (end0, end1)

    # the connected object drives the same sandbox
    assert same.files.read("/home/user/from-first.txt") == "written before connect"
    assert same.commands.run("echo connected").stdout == "connected\n"
    assert same.is_running() is True

    # a longer one extends it
    requested = now()
    Sandbox.connect(sbx.sandbox_id, timeout=600)
    end2 = sbx.get_info().end_at
    assert end2 > end1
    assert abs(seconds(end2 - (requested + timedelta(seconds=600)))) < 3

    # and a shorter one afterwards still does not shorten it
    Sandbox.connect(sbx.sandbox_id, timeout=30)
    assert abs(seconds(sbx.get_info().end_at - end2)) < 1


def test_connect_to_unknown_sandbox_fails():
    with pytest.raises(NotFoundException):
        Sandbox.connect("inosuchsandbox00000", timeout=30)


def test_list_filters_by_metadata_and_state(make_sandbox):
    tag = unique()
    a = make_sandbox(metadata={"tag": tag, "role": "a"})
    b = make_sandbox(metadata={"tag": tag, "role": "b"})
    other = make_sandbox(metadata={"tag": unique(), "role": "a"})

    assert listed_ids(SandboxQuery(metadata={"tag": tag})) == {a.sandbox_id, b.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "role": "a"})) == {a.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "role": "c"})) == set()

    running = SandboxQuery(metadata={"tag": tag}, state=[SandboxState.RUNNING])
    paused = SandboxQuery(metadata={"tag": tag}, state=[SandboxState.PAUSED])
    assert listed_ids(running) == {a.sandbox_id, b.sandbox_id}
    assert listed_ids(paused) == set()

    # listed entries carry the same fields as get_info
    [entry] = [i for i in Sandbox.list(query=SandboxQuery(metadata={"tag": tag, "role": "b"})).next_items()]
    assert entry.sandbox_id == b.sandbox_id
    assert entry.metadata == {"tag": tag, "role": "b"}
    assert entry.state == SandboxState.RUNNING
    assert entry.end_at > entry.started_at

    assert a.kill() is True
    assert listed_ids(running) == {b.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag})) == {b.sandbox_id}
    assert other.sandbox_id not in listed_ids(SandboxQuery(metadata={"tag": tag}))


def test_list_metadata_filter_with_special_characters(make_sandbox):
    """The SDK quotes keys and values, joins them with urlencode (quoting them again) and httpx
    encodes the parameter once more; E2B's API unescapes all three layers. Values with spaces,
    '&', '=', '%' or non-ASCII text must still match exactly."""
    tag = unique()
    meta = {"tag": tag, "note": "x y&z=1", "pct": "100%", "name": "Zoë/ü", "key with space": "v", "enc": "a%20b"}
    a = make_sandbox(metadata=meta)
    b = make_sandbox(metadata={"tag": tag, "note": "x y", "enc": "a b"})
    assert listed_ids(SandboxQuery(metadata={"tag": tag})) == {a.sandbox_id, b.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "note": "x y&z=1"})) == {a.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "note": "x y"})) == {b.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "pct": "100%"})) == {a.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "name": "Zoë/ü"})) == {a.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "key with space": "v"})) == {a.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "enc": "a%20b"})) == {a.sandbox_id}
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "enc": "a b"})) == {b.sandbox_id}
    assert listed_ids(SandboxQuery(metadata=meta)) == {a.sandbox_id}
    # "z=1" must not be taken as a separate filter key
    assert listed_ids(SandboxQuery(metadata={"tag": tag, "z": "1"})) == set()


def test_list_paginates_with_limit_and_next_token(make_sandbox):
    tag = unique()
    created = [make_sandbox(metadata={"tag": tag, "n": str(i)}) for i in range(3)]
    newest_first = [s.sandbox_id for s in reversed(created)]
    query = SandboxQuery(metadata={"tag": tag})

    pages = Sandbox.list(query=query, limit=2)
    assert pages.has_next
    first = pages.next_items()
    assert len(first) == 2
    assert pages.has_next and pages.next_token
    token = pages.next_token
    second = pages.next_items()
    assert len(second) == 1
    assert not pages.has_next
    # newest first by default, no sandbox twice, none missing
    assert ids(first) + ids(second) == newest_first

    # the token works on its own, from a fresh paginator
    resumed = Sandbox.list(query=query, limit=2, next_token=token)
    assert ids(resumed.next_items()) == ids(second)
    assert not resumed.has_next

    # limit larger than the result: one page, no token
    whole = Sandbox.list(query=query, limit=10)
    assert ids(whole.next_items()) == newest_first
    assert not whole.has_next and not whole.next_token


# The current SDK line has these list parameters; the 2.4x line only metadata and state.
SDK_LIST_ORDER = "order" in inspect.signature(Sandbox.list).parameters
SDK_QUERY_FIELDS = {f.name for f in dataclasses.fields(SandboxQuery)}


def raw_pages(server, **params) -> list[list[str]]:
    """The ids of GET /v2/sandboxes page by page, following X-Next-Token."""
    pages, token = [], None
    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=60) as http:
        while True:
            r = http.get("/v2/sandboxes", params={**params, **({"nextToken": token} if token else {})})
            assert r.status_code == 200, r.text
            pages.append([s["sandboxID"] for s in r.json()])
            token = r.headers.get("x-next-token")
            if not token:
                return pages


def sdk_pages(query: SandboxQuery, **kw) -> list[list[str]]:
    paginator = Sandbox.list(query=query, **kw)
    pages = []
    while paginator.has_next:
        pages.append(ids(paginator.next_items()))
    return pages


def test_list_order_and_started_after_with_pagination(make_sandbox, sdk_env):
    tag = unique()
    made = [make_sandbox(metadata={"tag": tag, "n": str(i)}).sandbox_id for i in range(5)]
    started = {i["sandboxID"]: i["startedAt"] for i in httpx.get(
        f"{sdk_env.url}/v2/sandboxes", params={"metadata": f"tag={tag}"},
        headers={"X-API-KEY": sdk_env.api_key}, timeout=60).json()}
    assert [started[s] for s in made] == sorted(started.values())  # created one after the other
    s0, s1, s2, s3, s4 = made
    meta = f"tag={tag}"
    assert raw_pages(sdk_env, metadata=meta, order="asc", limit=2) == [[s0, s1], [s2, s3], [s4]]
    assert raw_pages(sdk_env, metadata=meta, order="desc", limit=2) == [[s4, s3], [s2, s1], [s0]]
    assert raw_pages(sdk_env, metadata=meta, limit=3) == [[s4, s3, s2], [s1, s0]]  # newest first by default
    # startedAfter: at or after, to the microsecond startedAt shows; any offset
    after = started[s2]
    assert raw_pages(sdk_env, metadata=meta, startedAfter=after, order="asc", limit=2) == [[s2, s3], [s4]]
    assert raw_pages(sdk_env, metadata=meta, startedAfter=after, order="desc", limit=2) == [[s4, s3], [s2]]
    when = datetime.fromisoformat(after.replace("Z", "+00:00"))
    in_paris = when.astimezone(timezone(timedelta(hours=1))).isoformat()
    assert raw_pages(sdk_env, metadata=meta, startedAfter=in_paris, order="asc") == [[s2, s3, s4]]
    later = (when + timedelta(microseconds=1)).isoformat()
    assert raw_pages(sdk_env, metadata=meta, startedAfter=later, order="asc") == [[s3, s4]]
    future = (now() + timedelta(hours=1)).isoformat()
    assert raw_pages(sdk_env, metadata=meta, startedAfter=future) == [[]]
    # a next token keeps the order and the filters it was made under
    first = httpx.get(f"{sdk_env.url}/v2/sandboxes", headers={"X-API-KEY": sdk_env.api_key}, timeout=60,
                      params={"metadata": meta, "order": "asc", "limit": 1, "startedAfter": started[s1]})
    assert [s["sandboxID"] for s in first.json()] == [s1]
    assert raw_pages(sdk_env, metadata=meta, order="asc", limit=2, startedAfter=started[s1],
                     nextToken=first.headers["x-next-token"]) == [[s2, s3], [s4]]

    if not (SDK_LIST_ORDER and "started_after" in SDK_QUERY_FIELDS):
        return  # the 2.4x SDK cannot ask for these; the wire is covered above
    query = SandboxQuery(metadata={"tag": tag})
    assert sdk_pages(query, limit=2, order="asc") == [[s0, s1], [s2, s3], [s4]]
    assert sdk_pages(query, limit=2, order="desc") == [[s4, s3], [s2, s1], [s0]]
    since = SandboxQuery(metadata={"tag": tag}, started_after=when)
    assert sdk_pages(since, limit=2, order="asc") == [[s2, s3], [s4]]
    assert sdk_pages(since, limit=2) == [[s4, s3], [s2]]


def test_list_template_filter(make_sandbox, sdk_env):
    tag = unique()
    base_a = make_sandbox(metadata={"tag": tag}).sandbox_id
    ci_a = make_sandbox(template="code-interpreter", metadata={"tag": tag}).sandbox_id
    base_b = make_sandbox(metadata={"tag": tag}).sandbox_id
    ci_b = make_sandbox(template="code-interpreter", metadata={"tag": tag}).sandbox_id
    meta = f"tag={tag}"
    assert raw_pages(sdk_env, metadata=meta, template="base", order="asc") == [[base_a, base_b]]
    assert raw_pages(sdk_env, metadata=meta, template="code-interpreter", limit=1) == [[ci_b], [ci_a]]
    assert raw_pages(sdk_env, metadata=meta, template="code-interpreter-v1", order="asc") == [[ci_a, ci_b]]
    assert raw_pages(sdk_env, metadata=meta, template="nope") == [[]]
    assert raw_pages(sdk_env, metadata=meta, order="asc", limit=3) == [[base_a, ci_a, base_b], [ci_b]]
    r = httpx.get(f"{sdk_env.url}/v2/sandboxes", params={"metadata": meta, "template": "code-interpreter"},
                  headers={"X-API-KEY": sdk_env.api_key}, timeout=60)
    assert {s["templateID"] for s in r.json()} == {"code-interpreter"}

    if "template" not in SDK_QUERY_FIELDS:
        return
    assert sdk_pages(SandboxQuery(metadata={"tag": tag}, template="base"), limit=1) == [[base_b], [base_a]]
    assert sdk_pages(SandboxQuery(metadata={"tag": tag}, template="code-interpreter")) == [[ci_b, ci_a]]


def test_kill_returns_true_then_false(make_sandbox, server):
    sbx = make_sandbox()
    assert sbx.is_running() is True
    assert health(server, sbx.sandbox_id).status_code // 100 == 2
    assert sbx.kill() is True
    assert sbx.kill() is False
    assert Sandbox.kill(sbx.sandbox_id) is False
    assert Sandbox.kill("inosuchsandbox00000") is False
    assert_gone(server, sbx)
    # control-plane calls on a killed sandbox: not found
    with pytest.raises(SandboxNotFoundException):
        sbx.set_timeout(60)
    with pytest.raises(SandboxNotFoundException):
        sbx.get_metrics()
    with pytest.raises(NotFoundException):
        Sandbox.connect(sbx.sandbox_id, timeout=30)


def test_kill_aborts_open_streams(make_sandbox, server):
    sbx = make_sandbox()
    handle = sbx.commands.run("sleep 600", background=True)
    start = time.monotonic()
    assert Sandbox.kill(sbx.sandbox_id) is True
    with pytest.raises(SandboxException) as info:
        handle.wait()
    assert time.monotonic() - start < 10, "an open command stream must end when its sandbox is killed"
    assert_not_running_error(info.value)


def test_pause_and_resume_through_connect(make_sandbox, server):
    sbx = make_sandbox(timeout=120)
    sbx.files.write("/home/user/kept.txt", "survives the pause")
    background = sbx.commands.run("sleep 600", background=True)
    assert sbx.pause() is True
    assert sbx.is_running() is False
    assert sbx.get_info().state == SandboxState.PAUSED
    assert sbx.sandbox_id in listed_ids(SandboxQuery(state=[SandboxState.PAUSED]))
    assert sbx.sandbox_id not in listed_ids(SandboxQuery(state=[SandboxState.RUNNING]))
    assert_sandbox_gone_health(server, sbx.sandbox_id)
    assert sbx.pause() is False  # already paused (409)

    resumed = Sandbox.connect(sbx.sandbox_id, timeout=120)
    assert resumed.is_running() is True
    assert resumed.get_info().state == SandboxState.RUNNING
    assert resumed.files.read("/home/user/kept.txt") == "survives the pause"
    assert background.pid in {p.pid for p in resumed.commands.list()}, "processes survive a pause"
    assert resumed.commands.run("echo resumed").stdout == "resumed\n"


def test_kill_by_id_from_another_client(make_sandbox, server):
    sbx = make_sandbox()
    assert Sandbox.kill(sbx.sandbox_id) is True
    assert_gone(server, sbx)


def test_set_timeout_moves_the_end(make_sandbox):
    sbx = make_sandbox(timeout=60)
    end0 = sbx.get_info().end_at
    requested = now()
    sbx.set_timeout(600)
    end1 = sbx.get_info().end_at
    assert end1 > end0
    assert abs(seconds(end1 - (requested + timedelta(seconds=600)))) < 3
    # set_timeout may also shorten (unlike connect)
    requested = now()
    Sandbox.set_timeout(sbx.sandbox_id, 30)
    end2 = sbx.get_info().end_at
    assert end2 < end1
    assert abs(seconds(end2 - (requested + timedelta(seconds=30)))) < 3
    assert sbx.is_running()


def test_get_metrics(make_sandbox):
    sbx = make_sandbox()
    sbx.commands.run("python3 -c 'x = bytearray(30 * 1024 * 1024); import time; time.sleep(0.2)'")
    metrics = sbx.get_metrics()
    assert len(metrics) >= 1
    m = metrics[-1]
    assert m.cpu_count >= 1
    assert 0 <= m.cpu_used_pct <= 100
    assert m.mem_used > 0
    assert m.mem_total >= m.mem_used
    assert m.mem_cache >= 0
    assert m.disk_total > 0 and 0 <= m.disk_used <= m.disk_total
    assert isinstance(m.timestamp, datetime)
    assert abs(seconds(m.timestamp - now())) < 60
    # the static form answers the same sandbox
    assert Sandbox.get_metrics(sbx.sandbox_id)[-1].mem_total == m.mem_total


def test_sandbox_is_gone_promptly_after_its_timeout(make_sandbox, server):
    sbx = make_sandbox(timeout=2)
    end = sbx.get_info().end_at
    assert sbx.is_running() is True
    assert sbx.commands.run("echo alive").stdout == "alive\n"
    # clients expect the sandbox gone about a second after its end (docs/e2b.md §2.6)
    time.sleep(max(0.0, seconds(end - now())) + 1.5)
    assert sbx.is_running() is False
    with pytest.raises(SandboxNotFoundException):
        sbx.get_info()
    assert_gone(server, sbx)
    assert Sandbox.kill(sbx.sandbox_id) is False


def test_context_manager_kills_on_exit(sdk_env, server):
    with Sandbox.create(timeout=120) as sbx:
        assert sbx.commands.run("echo inside").stdout == "inside\n"
        sandbox_id = sbx.sandbox_id
    try:
        assert sbx.is_running() is False
        with pytest.raises(SandboxNotFoundException):
            Sandbox.get_info(sandbox_id)
        assert_sandbox_gone_health(server, sandbox_id)
    finally:
        kill_quietly(sbx)


def test_context_manager_kills_on_error(sdk_env):
    class Boom(Exception):
        pass

    sbx = None
    try:
        with pytest.raises(Boom), Sandbox.create(timeout=120) as sbx:
            raise Boom()
        assert sbx.is_running() is False
    finally:
        if sbx is not None:
            kill_quietly(sbx)
