"""Isolation: a sandbox has no network but loopback, sees no host path, process or environment,
never runs as host root, and its seccomp filter denies what containers are escaped with."""

from __future__ import annotations

import errno
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
from host_resources import _uids, pid_namespace, pid_namespace_members
from runtime_support import CANARY, enforces
from seccomp_support import SYSCALLS_SCRIPT, assert_the_host_answers_them, syscall_results
from support import REPO

from sandlot import SandlotError

from sandlot.runtimes.uids import UID_FIRST


def _host_address() -> str:
    """An address of this machine other than loopback (a sandbox must not reach it either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks the outgoing address
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


async def test_no_network_but_loopback(sandbox):
    listener = socket.socket()  # on this machine (never any other address): it would see a packet
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    abstract = socket.socket(socket.AF_UNIX)  # abstract unix sockets (X11, D-Bus...) are per netns
    abstract.bind(f"\0sandlot-conformance-{uuid.uuid4().hex}")
    abstract.listen()
    accepted = []
    for sock in (listener, abstract):
        threading.Thread(target=lambda sock=sock: accepted.append(sock.accept()), daemon=True).start()
    try:
        names = await sandbox.python("import socket; print(sorted(n for _, n in socket.if_nameindex()))")
        assert names.stdout == b"['lo']\n", names
        routes = await sandbox.run("tail -n +2 /proc/net/route; awk '$10 != \"lo\"' /proc/net/ipv6_route")
        assert routes.stdout.strip() == b"", routes
        for host in {_host_address(), "127.0.0.1"}:  # the sandbox's loopback is its own
            reach = await sandbox.python(f"import socket; socket.create_connection(({host!r}, "
                                         f"{listener.getsockname()[1]}), timeout=3)")
            assert reach.exit_code != 0, reach
        address = abstract.getsockname()
        reach = await sandbox.python(f"import socket; socket.socket(socket.AF_UNIX).connect({address!r})")
        assert reach.exit_code != 0 and b"ConnectionRefusedError" in reach.stderr, reach
        assert not accepted
    finally:
        listener.close()
        abstract.close()


async def test_host_paths_are_invisible(runtime, sandbox):
    markers = [Path("/tmp") / f"sandlot-host-marker-{uuid.uuid4().hex}",
               runtime.home / f"marker-{uuid.uuid4().hex}"]
    for marker in markers:
        marker.write_text("host secret")
    try:
        for path in [*markers, REPO / "pyproject.toml", runtime.home / "sandboxes", runtime.log]:
            seen = await sandbox.run(f"cat {path} || ls {path}")
            assert seen.exit_code != 0 and b"host secret" not in seen.stdout, (path, seen)
            with pytest.raises(SandlotError) as e:
                await sandbox.agent.stat(str(path))
            assert e.value.code in ("not_found", "permission_denied"), (path, e.value)
    finally:
        for marker in markers:
            marker.unlink()


async def test_its_own_hostname(runtime, sandbox):
    host = socket.gethostname()
    assert (await sandbox.run("hostname")).stdout == b"sandbox\n"
    who = "root" if enforces(runtime, "root") else "user"
    assert (await sandbox.run("hostname evil", user=who)).exit_code != 0  # no CAP_SYS_ADMIN, even as root
    assert (await sandbox.run("echo evil > /proc/sys/kernel/hostname", user=who)).exit_code != 0
    assert socket.gethostname() == host


async def test_its_own_pid_namespace(sandbox):
    assert sandbox.pid_ns != pid_namespace(os.getpid())
    inside = await sandbox.python("import os; print(*sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    pids = [int(p) for p in inside.stdout.split()]
    assert 1 in pids and max(pids) < 100, pids  # its own numbering, only its own few processes
    assert len(pids) <= len(pid_namespace_members(sandbox.pid_ns)) + 1  # (+ the python that listed them)
    cmdlines = await sandbox.run("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert b"pytest" not in cmdlines.stdout and b"runtime_driver" not in cmdlines.stdout, cmdlines


async def test_no_process_runs_as_host_root(runtime, make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    as_root = {"user": "root"} if enforces(runtime, "root") else {}
    for box in (a, b):
        await box.run("nohup sleep 600 >/dev/null 2>&1 &", **as_root)
    uids = {box.id: set().union(*(_uids(pid) for pid in pid_namespace_members(box.pid_ns))) for box in (a, b)}
    for box in (a, b):
        assert len(pid_namespace_members(box.pid_ns)) >= 2, box  # the agent (pid 1), the sleep at least
        assert uids[box.id] and 0 not in uids[box.id], uids
    if enforces(runtime, "own_uid"):  # host uids of their own: none shared, none of a host user's
        assert min(uids[a.id] | uids[b.id]) >= UID_FIRST, uids
        assert not uids[a.id] & uids[b.id], uids
    else:  # every sandbox runs as the account that runs the runtime, as its degradations say
        assert uids[a.id] == uids[b.id] == {runtime.uid}, uids


async def test_seccomp_denies_escape_syscalls(runtime, sandbox):
    assert_the_host_answers_them()  # the control: without the filter, no EPERM
    await sandbox.agent.write("/tmp/sys.py", None, SYSCALLS_SCRIPT.encode())
    for user in ["user", *(["root"] if enforces(runtime, "root") else [])]:
        probe = await sandbox.run("python3 /tmp/sys.py", user=user)
        for name, (rc, err) in syscall_results(probe.stdout.decode()).items():
            assert (rc, err) == (-1, errno.EPERM), f"{name} as {user}: {probe}"
    status = (await sandbox.run("grep -E 'NoNewPrivs|Seccomp:|CapEff' /proc/self/status")).stdout.decode()
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status, status
    assert "CapEff:\t0000000000000000" in status, status  # `user` has no capabilities at all


async def test_no_runtime_environment_reaches_the_sandbox(runtime, sandbox):
    user = "root" if enforces(runtime, "root") else "user"  # whoever may read every environ inside
    environs = await sandbox.run("for f in /proc/[0-9]*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; done",
                                 user=user)
    assert b"== /proc/1/environ" in environs.stdout, environs
    assert CANARY.encode() not in environs.stdout and b"SANDLOT_" not in environs.stdout, environs


async def test_neighbours_cannot_see_or_signal_each_other(make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    sleeper = await a.run("nohup sleep 600 >/dev/null 2>&1 & echo $!")
    await a.agent.write("/home/user/secret.txt", None, b"only for a")
    seen = await b.run("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert b"sleep 600" not in seen.stdout
    await b.run(f"kill -9 {int(sleeper.stdout)}")  # if that number is anything in b, it is b's own
    assert (await a.run(f"kill -0 {int(sleeper.stdout)} && echo alive")).stdout == b"alive\n"
    with pytest.raises(SandlotError) as e:
        await b.agent.stat("/home/user/secret.txt")
    assert e.value.code == "not_found"


async def test_root_inside(runtime, sandbox):
    if enforces(runtime, "root"):
        assert (await sandbox.run("id -u", user="root")).stdout == b"0\n"
        assert (await sandbox.run("sudo id -u")).stdout == b"0\n"
        return
    with pytest.raises(SandlotError) as e:
        await sandbox.run("id -u", user="root")
    assert e.value.code == "unauthenticated"
    sudo = await sandbox.run("sudo id -u")
    assert sudo.exit_code != 0 and sudo.stdout == b"", sudo


async def test_the_root_filesystem(runtime, make_sandbox):
    box, other = make_sandbox(), make_sandbox()
    if enforces(runtime, "writable_root"):  # root writes into its own layer, never the template's
        assert (await box.run("echo x > /usr/bin/planted", user="root")).exit_code == 0
        assert (await box.run("cat /usr/bin/planted")).stdout == b"x\n"
        assert (await other.run("test -e /usr/bin/planted")).exit_code != 0
        assert not list(runtime.home.glob("templates/*/rootfs/usr/bin/planted"))
    else:  # only the home and the tmpfs are writable
        for path in ("/usr/planted", "/etc/planted", "/planted"):
            write = await box.run(f"echo x > {path}")
            assert write.exit_code != 0 and b"Read-only file system" in write.stderr, (path, write)
    # for everyone: the user cannot write system paths, nobody the agent's code
    assert (await box.run("echo x > /usr/bin/evil")).exit_code != 0
    who = "root" if enforces(runtime, "root") else "user"
    assert (await box.run("echo x > /opt/sandlot/sandlot/agent/evil.py", user=who)).exit_code != 0


async def test_a_sandbox_cannot_redirect_its_agent_socket_to_a_neighbour(runtime, make_sandbox):
    # whoever owns /run/sandlot inside (root there, or `user` without root) may replace the agent's
    # socket with a symlink to another sandbox's: the runtime's socket must still reach its own agent
    attacker, victim = make_sandbox(), make_sandbox()
    await victim.agent.write("/home/user/owner.txt", None, b"victim")
    await attacker.agent.write("/home/user/owner.txt", None, b"attacker")
    who = "root" if enforces(runtime, "root") else "user"
    swap = await attacker.run(f"rm -f /run/sandlot/agent.sock && ln -s {victim.rt.socket_path} "
                              "/run/sandlot/agent.sock", user=who)
    assert swap.exit_code == 0, swap
    assert (await attacker.run("cat ~/owner.txt")).stdout == b"attacker"
    chunks = [c async for c in attacker.agent.read("/home/user/owner.txt")]
    assert b"".join(chunks[1:]) == b"attacker"


async def test_any_user_binds_low_ports_and_pings_in_its_namespace_and_gets_no_ipv6(runtime, sandbox):
    # netns.NETNS_SYSCTLS, written in the namespace the namespace runtime makes for each sandbox as
    # host root: its root's capabilities do not count there, so these are what let a web server on
    # port 80 and `ping` work at all; links made later get no IPv6
    if runtime.case.name != "namespace":
        pytest.skip("the rootless runtime's network namespace is owned by the sandbox's user namespace")
    check = await sandbox.python(
        "import os, socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound', os.getuid() != 0)\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); print('ping socket')\n"
        "print(open('/proc/sys/net/ipv6/conf/default/disable_ipv6').read().strip())")
    assert check.stdout == b"bound True\nping socket\n1\n", check
