"""A sandbox's lower is cloned from a bind of the template of its own (runtimes/sources.py), so
the clone walks no other mount: cloning straight from the state dir's filesystem made the kernel
check every sandbox's mounts under `/` at each create (is_subdir, ~9% of the server's CPU with
2000 alive). The binds go with the runtime, with a source deleted, or replaced on disk."""

import os
import shutil
from pathlib import Path

import pytest
from support import runtime_home

from sandlot.runtimes import sources
from sandlot.syscalls import is_mount_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds need root")


def _mounts() -> list[list[str]]:
    return [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _children(point: Path) -> list[str]:
    """Mount points whose parent is the mount at `point`."""
    ids = {f[0] for f in _mounts() if f[4] == str(point)}
    return [f[4] for f in _mounts() if f[1] in ids]


def test_a_source_is_bound_once_on_a_mount_with_nothing_below(tmp_path):
    run, src = tmp_path / "run", tmp_path / "template"
    run.mkdir()
    src.mkdir()
    (src / "marker").write_text("v1")
    (tmp_path / "beside").mkdir()
    os.system(f"mount -t tmpfs none {tmp_path / 'beside'}")  # a mount of the same parent as the source
    found = sources.Sources(run)
    try:
        bind = found.of(src)
        assert bind.parent == run / sources.DIR and is_mount_root(str(bind))
        assert (bind / "marker").read_text() == "v1"
        assert found.of(src) == bind  # once
        assert _children(bind) == []  # what a clone of it walks
        # replaced on disk (a rebuilt template at the same path): a new bind, the old one goes
        shutil.move(src, tmp_path / "old")
        src.mkdir()
        (src / "marker").write_text("v2")
        again = found.of(src)
        assert again != bind and (again / "marker").read_text() == "v2"
        assert not bind.exists()
        # deleted: its bind goes at the next prune, not at the server's stop
        shutil.rmtree(src)
        found._pruned -= sources.PRUNE_S + 1
        other = tmp_path / "other"
        other.mkdir()
        found.of(other)
        assert not again.exists()
    finally:
        found.close()
        os.system(f"umount {tmp_path / 'beside'}")
    assert list((run / sources.DIR).iterdir()) == []
    assert not any(f[4].startswith(str(run)) for f in _mounts())


def test_a_crashed_runtime_s_binds_are_detached_at_the_next_start(tmp_path):
    run, src = tmp_path / "run", tmp_path / "template"
    run.mkdir()
    src.mkdir()
    sources.Sources(run).of(src)  # never closed: as a killed server leaves it
    assert any(f[4].startswith(str(run / sources.DIR)) for f in _mounts())
    sources.Sources(run).close()
    assert not any(f[4].startswith(str(run)) for f in _mounts())


def test_sandboxes_clone_the_template_from_its_bind(tmp_path):
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    home, template = runtime_home(tmp_path)
    runtime = NamespaceRuntime(home)
    sid = "isourcesclone0000000"
    try:
        runtime.create(SandboxSpec(sid, "base"), template)
        binds = [f for f in _mounts() if f[4].startswith(str(runtime.sources.dir) + "/")]
        assert len(binds) == 1 and _children(Path(binds[0][4])) == []
        lower = [f for f in _mounts() if f[4].endswith(f"/{sid}/lower")]
        assert lower and lower[0][3] == binds[0][3]  # the same directory of the template's filesystem
        runtime.kill(sid)
    finally:
        runtime.kill(sid)
        runtime.close()
    assert not any(f[4].startswith(str(runtime.sources.dir)) for f in _mounts())
