"""Constants and helpers of the network suite (the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
HOST = "198.18.0.1"
ALLOWED, OTHER, NEIGHBOUR, DNS = "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.53"
H2 = "198.18.0.5"  # the world's HTTP/2 server (h2_server.py, the `h2_world` fixture)
SOCKS = "198.18.0.10"  # where the `socks` fixture runs its SOCKS5 server (socks_server.py)
SOCKS_TLS_PORT = 1443  # the same server inside TLS, its certificate for SOCKS and SOCKS_NAME
SOCKS_NAME = "socks.test"
SOCKS_USER, SOCKS_PASSWORD = "sandlot", f"pw-{os.getpid()}"
METADATA = "169.254.169.254"
ZONE = {
    "allowed.test": [ALLOWED],
    "other.test": [OTHER],
    "a.wild.test": [NEIGHBOUR],
    "h2.test": [H2],
    # DNS rebinding: allowed names whose answers are closed addresses
    "metadata.test": [METADATA],
    "host.test": [HOST],
    "loop.test": ["127.0.0.1"],
    # HTTPS whose certificate (for allowed.test) does not name it
    "mismatch.test": [ALLOWED],
}


@dataclass
class World:
    netns: str
    link: str
    log: Path  # the HTTP servers' request log (JSON lines)
    zone: Path  # the DNS server's names (JSON)
    ca: Path  # the HTTPS server's certificate, self-signed: what a client must trust to verify it
    dns: str = DNS

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


# Sends UDP questions for new names to argv[1]:53 at argv[2] a second for argv[3] seconds
DNS_FLOOD = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, n = time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < end:
    name = b"".join(bytes([len(p)]) + p for p in (os.urandom(6).hex().encode(), b"slow", b"test")) + b"\\0"
    s.sendto(os.urandom(2) + b"\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0" + name + b"\\0\\1\\0\\1", (sys.argv[1], 53))
    n += 1
    time.sleep(max(0, n / float(sys.argv[2]) - (time.monotonic() - end + float(sys.argv[3]))))
print(n)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _remove_dead_worlds() -> None:
    """A session that died (SIGKILL, an abort) left its world: its netns, its link holding the same
    addresses, the metadata route. Remove those whose test process is gone before making ours."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for name in listed:
        if not name.startswith("sandlot-world-") or not name.rsplit("-", 1)[1].isdigit():
            continue
        pid = int(name.rsplit("-", 1)[1])
        if os.path.exists(f"/proc/{pid}"):
            continue
        subprocess.run(["ip", "route", "del", f"{METADATA}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", f"slw{pid % 100000}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


WORLD_LOCK = Path("/run/sandlot-test-world.lock")


@contextlib.contextmanager
def outside_world(d: Path):
    """The world of conftest.py's docstring, its files in `d`; removed on exit. One at a time on a
    machine (its addresses and the metadata route are the host's): a second test run waits."""
    with open(WORLD_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with _world(d) as world:
            yield world


@contextlib.contextmanager
def _world(d: Path):
    _remove_dead_worlds()
    netns, link = f"sandlot-world-{os.getpid()}", f"slw{os.getpid() % 100000}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=allowed.test",
                    "-addext", "subjectAltName=DNS:allowed.test,DNS:h2.test"],
                   check=True, capture_output=True)
    (d / "zone.json").write_text(json.dumps(ZONE))
    _ip("netns", "add", netns)
    proc = None
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{HOST}/24", "dev", link)
        _ip("link", "set", link, "up")
        for address in (ALLOWED, OTHER, NEIGHBOUR, H2, DNS, SOCKS, METADATA):
            _ip("-n", netns, "addr", "add", f"{address}/{24 if address != METADATA else 32}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("route", "add", f"{METADATA}/32", "via", ALLOWED)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, str(HERE / "world.py"),
             "--http", ALLOWED, OTHER, NEIGHBOUR, METADATA, "--dns", DNS, "--zone", str(d / "zone.json"),
             "--cert", str(d / "cert.pem"), "--key", str(d / "key.pem"), "--log", str(d / "requests.log")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        yield World(netns, link, d / "requests.log", d / "zone.json", d / "cert.pem")
    finally:
        if proc is not None:
            proc.stdin.close()
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "route", "del", f"{METADATA}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)



def loop_thread(pid: int, port: int, timeout: float = 10) -> int:
    """The thread of process `pid` whose event loop accepts on TCP `port` (the egress proxy's, in
    network.json): the one waiting in the epoll instance that watches that listening socket."""
    inode = next(line.split()[9] for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
                 if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")
    fds = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    listening = next(int(fd) for fd, target in fds.items() if target == f"socket:[{inode}]")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the loop watches it while it waits for the next connection
        for fd in (fd for fd, target in fds.items() if target == "anon_inode:[eventpoll]"):
            watched = [int(line.split()[1]) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                       if line.startswith("tfd:")]
            if listening not in watched:
                continue
            for tid in os.listdir(f"/proc/{pid}/task"):  # blocked in epoll_wait on that instance
                call = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
                if len(call) > 1 and int(call[1], 16) == int(fd):
                    return int(tid)
        time.sleep(0.05)
    raise AssertionError(f"no thread of {pid} waits for connections on port {port}")


def wakeups(pid: int, tid: int) -> int:
    """How often the thread has blocked and woken again so far (its voluntary context switches)."""
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no context switches in /proc/{pid}/task/{tid}/status")


def sh(sbx, cmd: str, user: str | None = None, timeout: float = 30) -> tuple[int, str]:
    """Run `cmd` in the sandbox: (exit code, stdout + stderr), never raising on a non-zero exit."""
    from e2b import CommandExitException

    try:
        r = sbx.commands.run(cmd, user=user, timeout=timeout) if user else sbx.commands.run(cmd, timeout=timeout)
        return r.exit_code, r.stdout + r.stderr
    except CommandExitException as e:
        return e.exit_code, e.stdout + e.stderr


def fetch(sbx, url: str) -> tuple[int, str]:
    """curl from inside: exit 0 with the world's answer; 6 name refused; 7/28 connection refused or
    dropped (a dropped packet times out after 2 s)."""
    return sh(sbx, f"curl -sS -k --connect-timeout 2 -m 5 {url}")


def network(**kwargs) -> dict:
    """An E2B `network` option that resolves through the world's DNS server."""
    return {"dns_servers": [DNS], **kwargs}


def make_ca(name: str) -> tuple:
    """A throwaway CA: (certificate, key) (cryptography objects)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (_builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca: tuple, dns: list[str], ips: list[str]) -> tuple[bytes, bytes]:
    """A server certificate signed by `ca` for those names and addresses: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ips)[0])])
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    cert = (_builder(subject, ca[0].subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca[1], hashes.SHA256()))
    return pem(cert).encode(), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)))
