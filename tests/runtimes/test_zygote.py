"""The stem zygote (runtimes/zygote.py): stems are forked by a small process of their own, not by
the server (whose fork stopped it for milliseconds and left its memory copy-on-write shared with
every waiting stem), and nothing of it outlives a server that is killed."""

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import runtime_home, stems_ready

from sandlot.runtimes import cgroups
from sandlot.runtimes.sandbox_process import start_ticks

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not cgroups.detect(), reason="needs root and cgroups")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_stems_are_the_zygote_s_children_not_the_server_s(tmp_path):
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    home, template = runtime_home(tmp_path)
    runtime = NamespaceRuntime(home)
    made = []
    try:
        assert runtime.zygote is not None and runtime.zygote.proc is None  # started at the first stem
        parents = []
        for i in range(3):  # the first takes no stem (none forked yet): it forks itself
            sid = f"izygote{i:013d}"
            rt = runtime.create(SandboxSpec(sid, "base"), template)
            made.append(sid)
            parents.append(_parent(rt.pid))
            stems_ready(runtime.stems)
        assert runtime.zygote.proc.poll() is None
        assert parents[0] == os.getpid()
        assert parents[1:] == [runtime.zygote.proc.pid] * 2, (parents, runtime.zygote.proc.pid)
        for sid in made:
            runtime.kill(sid)
        assert runtime.leftovers() == set()
    finally:
        for sid in made:
            runtime.kill(sid)
        runtime.close()
    assert runtime.zygote.proc.returncode == 0  # it ended with its control socket


def test_a_create_without_a_ready_stem_has_the_zygote_fork_one(tmp_path):
    """A burst takes the stems faster than they refill: the creates that find none ask the zygote
    for one at once, rather than fork the server (whose fork, with thousands of sandboxes alive,
    was most of a create's CPU)."""
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    home, template = runtime_home(tmp_path)
    runtime = NamespaceRuntime(home)
    made = []
    try:
        made.append("inowstem0000000000a")
        runtime.create(SandboxSpec(made[-1], "base"), template)  # starts the zygote (the refill)
        stems_ready(runtime.stems)
        runtime.stems.take = lambda: None  # as if the burst had taken them all
        for name in ("inowstem0000000000b", "inowstem0000000000c"):
            made.append(name)
            rt = runtime.create(SandboxSpec(name, "base"), template)
            assert _parent(rt.pid) == runtime.zygote.proc.pid
        for sid in made:
            runtime.kill(sid)
        assert runtime.leftovers() == set()
    finally:
        for sid in made:
            runtime.kill(sid)
        runtime.close()


CRASHING_SERVER = textwrap.dedent("""
    import sys, time
    from sandlot.runtimes import cgroups
    from sandlot.runtimes.stems import Stems
    from sandlot.runtimes.zygote import Zygote

    zygote = Zygote()
    stems = Stems(cgroups.detect(), sys.argv[1], lambda pid: None, zygote=zygote)
    stems.take()  # the first fill (starts the zygote)
    deadline = time.monotonic() + 20
    while len(stems._stems) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    print(zygote.proc.pid, *(stem.pid for stem in stems._stems), flush=True)
    time.sleep(600)
""")


def test_a_killed_server_leaves_neither_zygote_nor_stems():
    group = "sandlot-zygotetest-" + secrets.token_hex(4)
    server = subprocess.Popen([sys.executable, "-c", CRASHING_SERVER, group], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in server.stdout.readline().split()]
        assert len(pids) == 3, pids  # the zygote and two stems
        assert all(start_ticks(pid) for pid in pids)
        assert all(_parent(pid) == pids[0] for pid in pids[1:])
        server.send_signal(signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 10
        while any(start_ticks(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(start_ticks(pid) for pid in pids)  # gone (or a zombie no one waits for)
    finally:
        server.kill()
        server.wait()
        for name in cgroups.leftovers(group):  # the spare groups: a next start removes them
            cgroups.SandboxCgroup(name, cgroups.detect(), group).remove()
    assert not cgroups.leftovers(group)


def test_a_zygote_that_stops_answering_is_given_up(monkeypatch):
    """A stopped (or wedged) zygote fails the refill within ANSWER_TIMEOUT (the stems then come from
    the server's own fork) instead of holding the refill, and with it the server's stop, forever."""
    import socket

    from sandlot.runtimes import zygote as zygote_module

    monkeypatch.setattr(zygote_module, "ANSWER_TIMEOUT", 0.5)
    z = zygote_module.Zygote()
    socks = []
    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socks += [ours, theirs]
        assert z.fork_stem(theirs, []) > 0  # started, and answering
        os.kill(z.proc.pid, signal.SIGSTOP)
        ours2, theirs2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socks += [ours2, theirs2]
        started = time.monotonic()
        with pytest.raises(OSError):
            z.fork_stem(theirs2, [])
        assert time.monotonic() - started < 5
        with pytest.raises(OSError, match="closed"):  # never asked again: its late answer is not taken
            z.fork_stem(theirs2, [])
    finally:
        if z.proc is not None:
            os.kill(z.proc.pid, signal.SIGCONT)
        for s in socks:
            s.close()  # its stems see their sockets close and exit
        z.close()
    assert z.proc.returncode is not None


def test_the_zygote_loads_only_what_stems_run():
    # every stem is a fork of the zygote: its page tables are copied at each fork and torn down at
    # each exec, so what the zygote imports costs every create. pyroute2 alone (links.py, the
    # veth code) held ~15 MiB of it; a stem makes its namespace with netns.py only
    code = textwrap.dedent("""
        import sys
        from sandlot.runtimes import zygote
        from sandlot.runtimes.stems import _stem_main  # what zygote.main loads before any fork
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pyroute2", "pydantic", "starlette", "asyncio", "httpx"})
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
