"""Pause modes and lifecycle through the official SDK (sync and async): a filesystem pause keeps the
files and ends the processes, and its resume is a cold boot (new boot id, uptime from the boot);
`lifecycle.on_timeout` pause in both modes; auto-resume on a request; what info reports."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox, SandboxState
from e2b_support import SDK_VERSION, assert_json_error
from support import kill_quietly
from packaging.version import Version

pytestmark = pytest.mark.skipif(SDK_VERSION < Version("2.55"),
                                reason="pause modes and lifecycle need a recent e2b SDK")

BOOT = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f1 /proc/uptime"


def detail(server, sandbox_id: str) -> dict:
    r = httpx.get(f"{server.url}/sandboxes/{sandbox_id}", headers={"X-API-KEY": server.api_key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_state(sbx, state: SandboxState, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sbx.get_info().state == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{sbx.sandbox_id} did not become {state}")


def freezer_state(sandbox_id: str) -> str:
    """The kernel's word on the sandbox's freezer: freezer.state (cgroup v1) or the frozen line of
    cgroup.events (v2). Reading the v1 file is what makes the kernel check the tasks."""
    cgroups = Path("/sys/fs/cgroup")
    for path in [*cgroups.glob(f"freezer/*/{sandbox_id}/freezer.state"),
                 *cgroups.glob(f"*/{sandbox_id}/cgroup.events")]:
        text = path.read_text()
        return text.strip() if path.name == "freezer.state" else next(
            line for line in text.splitlines() if line.startswith("frozen"))
    raise AssertionError(f"no freezer for {sandbox_id}")


def boot(sbx) -> tuple[str, float]:
    boot_id, uptime = sbx.commands.run(BOOT).stdout.split()
    return boot_id, float(uptime)


def test_filesystem_pause_keeps_files_and_resumes_with_a_cold_boot(make_sandbox, server):
    sbx = make_sandbox(timeout=300)
    sbx.commands.run("echo kept > /home/user/f.txt && sudo sh -c 'echo root > /etc/mine'")
    sbx.commands.run("sleep 600", background=True)
    host_boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    first_boot, _ = boot(sbx)
    assert first_boot != host_boot
    time.sleep(1.5)
    assert sbx.pause(mode="filesystem") is True
    assert sbx.pause(mode="filesystem") is False  # already paused
    info = detail(server, sbx.sandbox_id)
    assert info["state"] == "paused" and info["pauseMode"] == "filesystem"
    assert sbx.is_running() is False
    # nothing of it runs, nothing of it is mounted: only its layers are kept
    assert not (server.home / "sandboxes" / sbx.sandbox_id).exists()

    resumed = Sandbox.connect(sbx.sandbox_id, timeout=120)
    assert resumed.files.read("/home/user/f.txt") == "kept\n"
    assert resumed.commands.run("cat /etc/mine").stdout == "root\n"
    new_boot, uptime = boot(resumed)
    assert new_boot != first_boot and uptime < 1.5  # a cold boot: its own new boot, counted from it
    assert not [p for p in resumed.commands.list() if "sleep" in " ".join([p.cmd, *p.args])]
    assert "pauseMode" not in detail(server, sbx.sandbox_id)
    # and again: a second pause stacks a second layer on the first
    resumed.files.write("/home/user/g.txt", "second")
    assert resumed.pause(mode="filesystem") is True
    again = Sandbox.connect(sbx.sandbox_id, timeout=120)
    assert again.commands.run("cat /home/user/f.txt /home/user/g.txt").stdout == "kept\nsecond"


def test_full_pause_then_reboot_on_connect(make_sandbox, server):
    """on_resume="reboot" (memory: false) resumes a memory pause from its files only."""
    sbx = make_sandbox(timeout=300)
    sbx.files.write("/home/user/x", "x")
    first, _ = boot(sbx)
    assert sbx.pause() is True
    assert detail(server, sbx.sandbox_id)["pauseMode"] == "full"
    resumed = Sandbox.connect(sbx.sandbox_id, on_resume="reboot")
    assert resumed.files.read("/home/user/x") == "x"
    assert boot(resumed)[0] != first


def test_full_pause_keeps_processes_and_boot(make_sandbox):
    sbx = make_sandbox(timeout=300)
    handle = sbx.commands.run("sleep 600", background=True)
    first = boot(sbx)
    assert sbx.pause() is True
    resumed = Sandbox.connect(sbx.sandbox_id)
    assert handle.pid in [p.pid for p in resumed.commands.list()]
    assert boot(resumed)[0] == first[0]


def test_on_timeout_pause_filesystem(make_sandbox, server):
    sbx = make_sandbox(timeout=2, lifecycle={"on_timeout": {"action": "pause", "mode": "filesystem"}})
    sbx.files.write("/home/user/t.txt", "timed out")
    assert sbx.get_info().lifecycle == {"on_timeout": "pause", "auto_resume": False}
    wait_state(sbx, SandboxState.PAUSED)
    assert detail(server, sbx.sandbox_id)["pauseMode"] == "filesystem"
    resumed = Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert resumed.files.read("/home/user/t.txt") == "timed out"


def test_auto_resume_on_a_request(make_sandbox, server):
    sbx = make_sandbox(timeout=2, lifecycle={"on_timeout": "pause", "auto_resume": True})
    sbx.files.write("/home/user/a.txt", "auto")
    assert sbx.get_info().lifecycle == {"on_timeout": "pause", "auto_resume": True}
    wait_state(sbx, SandboxState.PAUSED)
    assert detail(server, sbx.sandbox_id)["pauseMode"] == "full"
    assert sbx.is_running() is False  # /health never wakes it
    # an envd request through the same handle wakes it, and is served
    assert sbx.files.read("/home/user/a.txt") == "auto"
    assert sbx.get_info().state == SandboxState.RUNNING


def test_bad_lifecycle_requests(server):
    headers = {"X-API-KEY": server.api_key}
    for body in ({"autoPause": False, "autoResume": {"enabled": True}},
                 {"autoPause": True, "autoPauseMemory": False, "autoResume": {"enabled": True}}):
        r = httpx.post(f"{server.url}/v2/sandboxes", json={"templateID": "base", **body}, headers=headers)
        assert_json_error(r, 400)


async def test_async_filesystem_pause_and_connect(sdk_env):
    sbx = await AsyncSandbox.create(timeout=300)
    try:
        await sbx.files.write("/home/user/async.txt", "async kept")
        assert await sbx.pause(mode="filesystem") is True
        assert (await sbx.get_info()).state == SandboxState.PAUSED
        resumed = await AsyncSandbox.connect(sbx.sandbox_id)
        assert await resumed.files.read("/home/user/async.txt") == "async kept"
    finally:
        kill_quietly_async = sbx.kill
        await kill_quietly_async()


def test_killing_a_filesystem_paused_sandbox_frees_its_layers(make_sandbox, server):
    sbx = make_sandbox(timeout=300)
    sbx.files.write("/home/user/big.bin", b"\0" * (1 << 20))
    before = {p.name for p in (server.home / "layers").iterdir()}
    assert sbx.pause(mode="filesystem") is True
    made = {p.name for p in (server.home / "layers").iterdir()} - before
    assert made
    sbx.kill()
    assert not made & {p.name for p in (server.home / "layers").iterdir()}
    kill_quietly(sbx)


def test_a_filesystem_paused_sandbox_answers_info_and_metrics(make_sandbox):
    sbx = make_sandbox(timeout=300)
    assert sbx.pause(mode="filesystem") is True
    assert sbx.get_info().state == SandboxState.PAUSED
    assert isinstance(sbx.get_metrics(), list)  # its samples so far; nothing runs to sample now


def test_a_full_pause_returns_once_every_process_is_frozen(make_sandbox):
    """Busy processes on both cores: the pause (and so a snapshot's copy, which freezes the same
    way) is answered only once the kernel reports the whole group frozen, not when it was asked."""
    sbx = make_sandbox(timeout=300)
    sbx.commands.run("for i in $(seq 16); do (while :; do :; done) & done", background=True)
    time.sleep(0.3)
    for _ in range(3):
        assert sbx.pause() is True
        state = freezer_state(sbx.sandbox_id)
        assert state in ("FROZEN", "frozen 1"), state
        sbx = Sandbox.connect(sbx.sandbox_id)
