"""Sandboxes' mount namespaces are made from a clean base, not from the host's (runtimes/mount_ns.py):
a create copies the host's few mounts, never the other sandboxes' (five each), and no runtime's
base keeps a copy of another's sandbox mounts alive (a disk, and its loop device, would outlive
the sandbox's kill)."""

import os
import subprocess
from pathlib import Path

import pytest
from host_resources import sandbox_traces
from support import runtime_home, stems_ready

from sandlot.hostfs import parse_mountinfo
from sandlot.runtimes import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace runtime needs root")


def _mountinfo(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/mountinfo").read_text().splitlines()


def test_a_sandbox_s_mount_namespace_holds_none_of_the_other_sandboxes_mounts(tmp_path):
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    home, template = runtime_home(tmp_path)
    runtime = NamespaceRuntime(home)
    made = {}
    try:
        for i in range(4):  # the first forks itself (no stem yet), the others are stems
            sid = f"imountns{i:012d}"
            made[sid] = runtime.create(SandboxSpec(sid, "base"), template).pid
            if runtime.stems:
                stems_ready(runtime.stems)
        host = "\n".join(_mountinfo(os.getpid()))
        assert all(sid in host for sid in made)  # the host's namespace keeps every sandbox's mounts
        sizes = set()
        for sid, pid in made.items():
            own = _mountinfo(pid)  # the sandbox's outer process: the namespace bwrap copied
            others = [line for line in own for other in made if other != sid and other in line]
            assert not others, f"{sid}'s mount namespace holds other sandboxes' mounts: {others}"
            assert any(f"/{sid} " in line for line in own)  # its own run dir, where bwrap found it
            sizes.add(len(own))
        assert len(sizes) == 1, f"a sandbox's namespace grew with the sandboxes before it: {sizes}"
        for sid in made:
            runtime.kill(sid)
            assert not sandbox_traces(sid, home)
    finally:
        for sid in made:
            runtime.kill(sid)
        runtime.close()


@pytest.mark.skipif(not cgroups.detect(), reason="needs cgroups (stems and the zygote)")
def test_another_runtime_keeps_no_copy_of_a_sandbox_s_mounts(tmp_path):
    """A second server starts while a sandbox of the first is alive: its base namespace is copied
    from the host's, mounts of that sandbox included, and must let them go. Else the sandbox's
    disk stays mounted there after its kill, its loop device held, and a resume that mounts the
    same image again would have two filesystems on one file."""
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    home, template = runtime_home(tmp_path / "first")
    first = NamespaceRuntime(home)
    second = None
    sid = "imountnsother0000000"
    try:
        first.create(SandboxSpec(sid, "base"), template)
        other_home, _ = runtime_home(tmp_path / "second")
        second = NamespaceRuntime(other_home)
        base = subprocess.run(["nsenter", f"--mount=/proc/{os.getpid()}/fd/{second.mount_ns.base}",
                               "cat", "/proc/self/mountinfo"], capture_output=True, text=True, check=True).stdout
        def under_home(text):
            return [m.point for m in parse_mountinfo(text) if m.point.startswith(f"{home.resolve()}/")]

        assert under_home(Path("/proc/self/mountinfo").read_text())  # the host's has them
        assert sid not in base and not under_home(base)  # the second's base has none
        first.kill(sid)
        assert not sandbox_traces(sid, home)  # its loop device is gone too
    finally:
        first.kill(sid)
        first.close()
        if second is not None:
            second.close()
