"""A sandbox is hostile: it must not see or touch the host, the control plane, or its neighbours."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

from e2b import CommandExitException
from seccomp_support import SYSCALLS_SCRIPT, assert_the_host_answers_them, syscall_results


def run(sbx, cmd, **kw):
    """Run a command; return (exit code, stdout + stderr) whether it succeeded or not."""
    try:
        r = sbx.commands.run(cmd, **kw)
        return r.exit_code, r.stdout + r.stderr
    except CommandExitException as e:
        return e.exit_code, e.stdout + e.stderr


def test_host_files_are_invisible(make_sandbox, tmp_path):
    marker = Path("/tmp") / f"sandlot-host-marker-{uuid.uuid4().hex}"
    marker.write_text("host secret")
    try:
        sbx = make_sandbox()
        code, out = run(sbx, f"cat {marker}", user="root")
        assert code != 0 and "host secret" not in out
        # /root, /etc/shadow and home directories of the host are not the host's
        code, out = run(sbx, "ls -A /root 2>&1; cat /etc/shadow 2>&1 | head -3", user="root")
        assert "host secret" not in out
        assert str(Path.home()) == "/root"
        host_root_entries = set(os.listdir("/root"))
        inside = set(run(sbx, "ls -A /root", user="root")[1].split())
        assert not (host_root_entries & inside) - {".bashrc", ".profile"}
        # the control plane's code and state are not reachable by path
        code, out = run(sbx, "ls /work /var/lib/sandlot /tmp/sandlot-test-* 2>&1; echo done", user="root")
        assert "state.db" not in out and "pyproject.toml" not in out
    finally:
        marker.unlink()


def test_host_processes_are_invisible(make_sandbox):
    sbx = make_sandbox()
    code, out = run(sbx, "ps -eo pid,comm --no-headers")
    assert code == 0
    pids = [int(line.split()[0]) for line in out.splitlines() if line.strip()]
    assert max(pids) < 100, out  # its own pid namespace: only its own few processes
    assert str(os.getpid()) not in out.split() or os.getpid() > 100
    assert "pytest" not in out and "sandlot serve" not in out
    # pid 1 is the agent (bwrap runs outside: it takes its options from an fd, and its init would be
    # a process of its own inside); no host path shows in any command line
    code, out = run(sbx, "tr '\\0' ' ' < /proc/1/cmdline; echo; ps -eo comm --no-headers")
    assert "sandlot.agent.main" in out.splitlines()[0] and "bwrap" not in out, out
    assert "--bind" not in out and "site-packages" not in out, out
    assert not re.search(r"/run/sandlot/[0-9a-f]{12}|/sandboxes/", out), out


def test_no_server_environment_reaches_the_sandbox(make_sandbox, server):
    # bwrap is pid 1 inside and root there may read its environ: the server's must not be in it
    sbx = make_sandbox()
    code, out = run(sbx, "for f in /proc/[0-9]*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; done",
                    user="root")
    assert "== /proc/1/environ" in out, out
    assert server.api_key not in out and "SANDLOT_" not in out, out


def test_control_plane_port_is_unreachable(make_sandbox, server):
    sbx = make_sandbox()
    port = server.url.rsplit(":", 1)[1]
    code, out = run(sbx, f"curl -sS -m 3 http://127.0.0.1:{port}/_sandlot/health")
    assert code != 0, out
    assert '"status"' not in out


def _host_address() -> str:
    """An address of this machine other than loopback (the sandbox must not reach it either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks the outgoing address
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


# each interface but loopback: its IPv4 address (None) and how many IPv6 addresses it has
ADDRESSES = """import fcntl, socket, struct
for _, name in socket.if_nameindex():
    if name == "lo":
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        v4 = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()))[20:24])
    except OSError:  # SIOCGIFADDR: EADDRNOTAVAIL, no address
        v4 = None
    v6 = [line.split()[-1] for line in open("/proc/net/if_inet6")].count(name)
    print(name, v4, v6)
"""


def test_outbound_network_fails_by_default(make_sandbox):
    # A listener on this machine (never any other address) that would answer if a packet got out.
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        sbx = make_sandbox()
        host = _host_address()
        code, out = run(sbx, f"curl -sS -m 3 http://{host}:{port}/")
        assert code != 0
        code, out = run(sbx, "ip -o route 2>/dev/null; cat /proc/net/route | tail -n +2")
        assert out.strip() == "", f"sandbox has routes: {out}"
        # No interface but loopback has an address, at any moment. A pool sandbox's link, made ahead
        # for a claim that asks for a network (down, no address, no route, no firewall elements: it
        # carries nothing), goes just after the create has answered: wait for it, then only
        # loopback is left.
        sbx.files.write("/tmp/addresses.py", ADDRESSES)
        code, out = run(sbx, "python3 /tmp/addresses.py")
        assert code == 0 and all(line.endswith(" None 0") for line in out.splitlines()), out
        code, out = run(sbx, "for i in $(seq 50); do [ \"$(ls /sys/class/net)\" = lo ] && break; sleep 0.1; done; "
                             "cat /sys/class/net/*/operstate 2>/dev/null; ls /sys/class/net 2>/dev/null || "
                             "python3 -c 'import socket; print([n for _, n in socket.if_nameindex()])'")
        assert "eth" not in out and "veth" not in out, out
        assert not accepted
    finally:
        listener.close()


def test_sandboxes_cannot_see_or_signal_each_other(make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    handle = a.commands.run("sleep 600", background=True)
    a.files.write("/home/user/secret.txt", "only for a")
    code, out = run(b, "ps -eo comm --no-headers")
    assert "sleep" not in out
    code, out = run(b, f"kill -9 {handle.pid}; echo rc=$?", user="root")
    assert a.commands.list() and any(p.pid == handle.pid for p in a.commands.list())
    assert not b.files.exists("/home/user/secret.txt")
    # different host uid ranges: a's files in b's view do not exist, and uids differ on the host
    ua = run(a, "cat /proc/self/uid_map")[1].split()
    ub = run(b, "cat /proc/self/uid_map")[1].split()
    assert ua[1] != ub[1] and int(ua[1]) >= 1_000_000 and int(ub[1]) >= 1_000_000
    handle.kill()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # gone meanwhile (its login shell's helpers come and go)
        return ""


def _sleep_pid(host_cgroup, sandbox_id: str) -> int:
    """The host pid of the one `sleep` running in a sandbox (once its shell has exec'd it)."""
    deadline = time.monotonic() + 10
    while True:
        pids = [p for p in host_cgroup(sandbox_id).pids() if _comm(p) == "sleep"]
        if pids or time.monotonic() > deadline:
            assert len(pids) == 1, pids
            return pids[0]
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_everything_as_root_in_one_sandbox_spares_its_neighbour(make_sandbox, host_cgroup):
    a, b = make_sandbox(), make_sandbox()
    survivor = a.commands.run("sleep 600", background=True)
    b.commands.run("sleep 600", background=True)
    host_survivor, host_victim = _sleep_pid(host_cgroup, a.sandbox_id), _sleep_pid(host_cgroup, b.sandbox_id)
    with contextlib.suppress(Exception):  # b's agent goes too, so the command's stream breaks off
        b.commands.run("kill -9 -1", user="root", timeout=20)
    deadline = time.monotonic() + 10
    while _alive(host_victim):  # the signal was real: b's own processes die
        assert time.monotonic() < deadline, "kill -9 -1 did not kill b's sleep"
        time.sleep(0.05)
    assert _alive(host_survivor)
    assert any(p.pid == survivor.pid for p in a.commands.list())
    assert a.commands.run("echo ok").stdout == "ok\n"
    survivor.kill()


def test_writes_outside_the_writable_layer_fail(make_sandbox, server):
    sbx = make_sandbox()
    # the agent's code and the sudo shim are read-only binds; /proc/sys is read-only
    for path in ("/opt/sandlot/sandlot/evil.py", "/opt/sandlot/sandlot/agent/evil.py", "/usr/bin/sudo", "/proc/sys/kernel/hostname"):
        code, out = run(sbx, f"echo x > {path}", user="root")
        assert code != 0, f"{path} writable: {out}"
    # the user cannot write system paths; root inside can, but only into its own layer
    code, _ = run(sbx, "echo x > /usr/bin/evil")
    assert code != 0
    code, _ = run(sbx, "echo x > /usr/bin/evil && cat /usr/bin/evil", user="root")
    assert code == 0
    templates = server.home / "templates"
    assert not list(templates.glob("*/rootfs/usr/bin/evil"))
    other = make_sandbox()
    assert not other.files.exists("/usr/bin/evil")


def test_dangerous_syscalls_are_blocked(make_sandbox):
    assert_the_host_answers_them()  # the control: without the filter, no EPERM

    sbx = make_sandbox()
    sbx.files.write("/tmp/sys.py", SYSCALLS_SCRIPT)
    code, out = run(sbx, "python3 /tmp/sys.py", user="root")
    for name, (rc, err) in syscall_results(out).items():
        assert (rc, err) == (-1, errno.EPERM), f"{name}: {out}"
    code, out = run(sbx, "grep -E 'NoNewPrivs|Seccomp:|CapEff' /proc/self/status")
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert "CapEff:\t0000000000000000" in out  # `user` has no capabilities at all


def test_the_agent_holds_only_what_it_spawns_with(make_sandbox):
    """The agent (pid 1 inside) drops its privileges itself (agent/privileges.py, through
    agent/libc.py): its bounding set is the runtime's list, so root inside never gains more, and
    as the default user it keeps in effect only what switching users and signalling need."""
    from sandlot.agent.privileges import CAPS
    from sandlot.runtimes.policy import SANDBOX_ROOT_CAPS

    sbx = make_sandbox()
    sbx.commands.run("true")  # answered: the drop is done
    status = dict(line.split(":\t", 1) for line in sbx.files.read("/proc/1/status").splitlines() if ":\t" in line)
    allowed = sum(1 << CAPS[name] for name in SANDBOX_ROOT_CAPS)
    effective = sum(1 << CAPS[name] for name in ("CAP_SETUID", "CAP_SETGID", "CAP_KILL"))
    assert int(status["CapBnd"], 16) == allowed
    assert int(status["CapPrm"], 16) == allowed
    assert int(status["CapEff"], 16) == effective
    assert int(status["CapInh"], 16) == 0
    assert status["Uid"].split()[:2] == ["1000", "1000"]  # real and effective: the default user
    code, out = run(sbx, "grep CapBnd /proc/self/status", user="root")
    assert int(out.split()[1], 16) == allowed  # root inside: no more than the list


def test_a_sandbox_cannot_redirect_its_agent_socket_to_a_neighbour(make_sandbox):
    # Root inside a sandbox owns /run/sandlot: it may replace the agent socket with a symlink to
    # another sandbox's socket on the host. The control plane must keep talking to its own agent.
    attacker, victim = make_sandbox(), make_sandbox()
    victim.files.write("/home/user/owner.txt", "victim")
    attacker.files.write("/home/user/owner.txt", "attacker")
    target = next(Path("/run/sandlot").glob(f"*/{victim.sandbox_id}/run/agent.sock"))
    code, out = run(attacker, f"rm -f /run/sandlot/agent.sock && ln -s {target} /run/sandlot/agent.sock",
                    user="root")
    assert code == 0, out
    assert attacker.files.read("/home/user/owner.txt") == "attacker"
    assert attacker.commands.run("cat /home/user/owner.txt").stdout == "attacker"


def _mount_options(mount_point: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mount_point):
            return set(fields[5].split(","))
    raise AssertionError(f"{mount_point} is not a mount point")


def test_setuid_files_a_sandbox_plants_give_host_users_nothing(make_sandbox, server):
    """Root inside owns its layer: it can make a setuid file there, owned by its host uid. Seen from
    the host, the sandbox's mounts are nosuid and nodev and its directory is closed to other users."""
    sbx = make_sandbox()
    code, out = run(sbx, "cp /usr/bin/id /home/user/suid-id && chmod 4755 /home/user/suid-id && "
                         "stat -c %a /home/user/suid-id", user="root")
    assert (code, out.strip()) == (0, "4755"), out
    mnt = next(Path("/run/sandlot").glob(f"*/{sbx.sandbox_id}"))
    lower = server.home.resolve() / "sandboxes" / sbx.sandbox_id / "lower"
    for mount_point in (mnt / "root", lower):
        assert {"nosuid", "nodev"} <= _mount_options(mount_point), mount_point
    planted = mnt / "root" / "home" / "user" / "suid-id"
    assert planted.stat().st_mode & 0o4000  # the bit is there: only the mount makes it inert
    # host root running it stays root (no switch to the sandbox's uid) ...
    done = subprocess.run([str(planted), "-u"], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "0", done
    # ... and another host user cannot even reach it (through sh: setpriv itself execs while it
    # still holds root's capabilities)
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                           'exec "$0" -u', str(planted)], capture_output=True, text=True, timeout=30, cwd="/")
    assert done.returncode != 0 and "Permission denied" in done.stderr, done
    assert mnt.stat().st_mode & 0o007 == 0
