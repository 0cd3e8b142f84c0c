"""cgroup limits, checked from the host: what the kernel was told, and what a hostile sandbox gets."""

from __future__ import annotations

import time

import httpx
from e2b import CommandExitException


def run(sbx, cmd, **kw):
    try:
        r = sbx.commands.run(cmd, **kw)
        return r.exit_code, r.stdout + r.stderr
    except CommandExitException as e:
        return e.exit_code, e.stdout + e.stderr


def _value(cg, controller: str, v1_file: str, v2_file: str) -> str:
    d = cg.dirs.get(controller) or cg.dirs["unified"]
    return (d / (v1_file if cg.version == "v1" else v2_file)).read_text().strip()


def _counter(cg, controller: str, file: str, key: str) -> int:
    d = cg.dirs.get(controller) or cg.dirs["unified"]
    for line in (d / file).read_text().splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return 0


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_fork_bomb_is_stopped_by_the_pids_limit(make_sandbox, host_cgroup, server):
    bomb, neighbour = make_sandbox(pids=64), make_sandbox()
    cg = host_cgroup(bomb.sandbox_id)
    assert _value(cg, "pids", "pids.max", "pids.max") == "64"
    idle = cg.usage().pids
    refused = _counter(cg, "pids", "pids.events", "max")
    handle = bomb.commands.run("f(){ f | f & }; f; exec sleep 600", background=True)
    peak, end = 0, time.monotonic() + 3
    while time.monotonic() < end:
        peak = max(peak, cg.usage().pids)
        time.sleep(0.01)
    assert 56 <= peak <= 64, peak  # it filled the sandbox's quota, and not one process more
    assert _counter(cg, "pids", "pids.events", "max") > refused  # the kernel refused its forks
    assert neighbour.commands.run("echo ok").stdout.strip() == "ok"
    assert httpx.get(f"{server.url}/_sandlot/health").status_code == 200
    handle.kill()  # the agent signals the command's process group: every copy of the bomb
    _wait(lambda: cg.usage().pids <= idle, 20, "the bomb's processes to go")
    assert bomb.commands.run("echo alive").stdout.strip() == "alive"


def test_memory_bomb_is_oom_killed_alone(make_sandbox, host_cgroup, server):
    bomb, neighbour = make_sandbox(memory_mb=128), make_sandbox()
    survivor = neighbour.commands.run("sleep 600", background=True)  # started before the bomb
    cg, neighbour_cg = host_cgroup(bomb.sandbox_id), host_cgroup(neighbour.sandbox_id)
    assert int(_value(cg, "memory", "memory.limit_in_bytes", "memory.max")) == 128 * 1024 * 1024
    assert not cg.oom_killed()
    # bytes, not bytearray: the pages must really be written, not just reserved
    code, out = run(bomb, "python3 -c 'x = []\nwhile True: x.append(b\"x\" * 10**7)'; echo rc=$?", timeout=60)
    assert "rc=137" in out, (code, out)  # SIGKILL: the OOM killer, not a MemoryError
    assert cg.oom_killed()
    assert not neighbour_cg.oom_killed()
    assert any(p.pid == survivor.pid for p in neighbour.commands.list())
    assert bomb.commands.run("echo alive").stdout.strip() == "alive"
    assert neighbour.commands.run("echo fine").stdout.strip() == "fine"
    assert httpx.get(f"{server.url}/_sandlot/health").status_code == 200
    survivor.kill()


def test_cpu_limit_gives_a_fraction_of_a_core(make_sandbox, host_cgroup):
    sbx = make_sandbox(cpu_count=0.2)
    cg = host_cgroup(sbx.sandbox_id)
    if cg.version == "v1":
        assert (_value(cg, "cpu", "cpu.cfs_quota_us", ""), _value(cg, "cpu", "cpu.cfs_period_us", "")) == \
            ("20000", "100000")
    else:
        assert _value(cg, "cpu", "", "cpu.max") == "20000 100000"
    busy = sbx.commands.run("exec python3 -c 'while True: pass'", background=True)
    try:
        time.sleep(0.5)  # started and throttled
        used, began = cg.usage().cpu_usage_ns, time.monotonic()
        time.sleep(2)
        share = (cg.usage().cpu_usage_ns - used) / 1e9 / (time.monotonic() - began)
    finally:
        busy.kill()
    # a loop like this takes a whole core when unlimited; the quota allows 20 ms per 100 ms
    assert 0.08 <= share <= 0.3, share
