"""Test support: start a real sandlot server in a subprocess, on a free loopback port; helpers every
suite shares (tests/conftest.py holds the shared fixtures).

Imports nothing from sandlot, so the e2b end-to-end tests can also run from a venv that holds only
another release of the official SDK (see ./dev test).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
API_KEY = "e2b_" + "5a" * 20  # E2B-shaped, so SDK releases that validate key shapes accept it
# Templates are slow to build; tests share one cache (a real user would build once too).
TEMPLATE_CACHE = Path(os.environ.get("SANDLOT_TEST_HOME", "/var/tmp/sandlot-test-home")) / "templates"


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range. One from that range (what binding port 0
    gives) may become the local port of any outgoing connection before the server binds it: CI saw
    a server exit with "address already in use"."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 10000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # someone's listener, or a connection of its in TIME_WAIT
                continue
            return port
    raise RuntimeError(f"no free port below {low}")


@dataclass
class Server:
    url: str
    api_key: str
    home: Path
    proc: subprocess.Popen
    log: Path

    def env(self) -> dict[str, str]:
        """Environment for the official SDKs (docs/e2b.md §1.1)."""
        return {"E2B_API_URL": self.url, "E2B_SANDBOX_URL": self.url, "E2B_API_KEY": self.api_key,
                "E2B_DOMAIN": "localhost"}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                # a stop that hangs leaves the server's run dir, firewall table and cgroups behind
                raise AssertionError(f"the server did not stop within 20 s of signal {sig}: killed") from None


TEMPLATES = ("base", "code-interpreter")


def server_cmd() -> list[str]:
    cmd = os.environ.get("SANDLOT_SERVER_CMD")
    if cmd:
        return cmd.split()
    return [str(REPO / ".venv" / "bin" / "sandlot")]


def start_server(home: Path, port: int | None = None, pool_size: int = 2, extra_env=None,
                 api_key: str | None = API_KEY) -> Server:
    """A server on `home`, whose templates are the shared cache unless `home/templates` exists.
    api_key=None: no preset key (the server makes and prints its first key; `Server.api_key` is
    then empty)."""
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    link_templates(home)
    log = home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "SANDLOT_API_KEY"}
    # pools keep their size unless a test asks for them to follow demand (test_pool_demand.py): the
    # suites' timings and counts should not depend on how many creates came before
    env.update({"SANDLOT_HOME": str(home), "SANDLOT_POOL_MAX": str(pool_size),
                **({"SANDLOT_API_KEY": api_key} if api_key else {}), **(extra_env or {})})
    proc = subprocess.Popen(
        [*server_cmd(), "serve", "--host", "127.0.0.1", "--port", str(port), "--pool-size", str(pool_size)],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    return wait_until_serving(Server(f"http://127.0.0.1:{port}", api_key or "", home, proc, log), port,
                              timeout=600)  # the first run builds the base template


def start_tls_server(home: Path) -> Server:
    """A server with `--tls local-ca` and `--domain sandlot.localhost:PORT` (`*.localhost` alone would
    be one label under the wildcard, which TLS clients refuse): `url` is https, `ca` is its CA's PEM
    file, `domain` its domain. Its environment names no CA file (SSL_CERT_FILE, SANDLOT_CA_FILE):
    what it trusts of itself, it finds on its own."""
    port = free_port()
    domain = f"sandlot.localhost:{port}"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SSL_CERT_FILE", raising=False)
        env.delenv("SANDLOT_CA_FILE", raising=False)
        srv = start_server(home, port=port, pool_size=0, extra_env={
            "SANDLOT_TLS": "local-ca", "SANDLOT_DOMAIN": domain, "SANDLOT_POOL_TEMPLATES": ""})
    srv.url, srv.ca, srv.domain = f"https://127.0.0.1:{port}", home / "ca" / "proxy" / "ca.pem", domain
    return srv


def runtime_home(tmp_path: Path):
    """A state dir under `tmp_path` (its name holds a space) on the shared template cache, and its
    `base` template: for tests that drive a NamespaceRuntime in-process. Skips without `base`."""
    from sandlot.templates import TemplateStore

    if not (TEMPLATE_CACHE / "base").is_dir():
        pytest.skip("the shared base template is not built")
    home = Path(tempfile.mkdtemp(prefix="sandlot test home ", dir=tmp_path))
    (home / "templates").symlink_to(TEMPLATE_CACHE)
    return home, TemplateStore(home).get("base")


def stems_ready(stems, within: float = 20.0) -> None:
    """Wait until the stems are forked and attached (each has said it is ready)."""
    from sandlot.runtimes.stems import _readable

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with stems._lock:
            if len(stems._stems) >= stems.keep and all(st.ready or _readable(st.sock) for st in stems._stems):
                return
        time.sleep(0.02)
    raise AssertionError("the stems did not become ready")


def link_templates(home: Path) -> None:
    """Give the state dir `home` the shared template cache, unless it has templates of its own, and
    build there the templates the suites use."""
    templates = home / "templates"
    if not templates.exists():
        TEMPLATE_CACHE.mkdir(parents=True, exist_ok=True)
        templates.symlink_to(TEMPLATE_CACHE)
    if templates.is_symlink():
        build_templates(home)


_templates_built = False


def build_templates(home: Path) -> None:
    """Build (once per test session) the templates the suites use, before a server needs them: a
    first build takes minutes, longer than the SDKs wait for a create. Only root can build them."""
    global _templates_built
    if _templates_built or os.geteuid() != 0:
        return
    for name in TEMPLATES:
        subprocess.run([*server_cmd(), "template", "build", name, "--if-stale", "--home", str(home)],
                       check=True, timeout=1800)
    _templates_built = True


def wait_until_serving(server: Server, port: int, timeout: float) -> Server:
    """Return the server once its port accepts connections; raise with its log if it dies first."""
    proc, log = server.proc, server.log
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError("server did not start in time")



@contextlib.contextmanager
def throwaway_user(prefix: str, homes: Path):
    """A temporary host account (own group, bash, a home under ``homes``) playing a sandbox's
    ``user`` in tests that run the agent on the host; removed afterwards."""
    name = prefix + uuid.uuid4().hex[:8]
    home = homes / name
    homes.mkdir(exist_ok=True)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/bash",
                    "--user-group", name], check=True)
    try:
        pw = pwd.getpwnam(name)
        home.mkdir()
        os.chown(home, pw.pw_uid, pw.pw_gid)
        yield pw
    finally:
        for _ in range(50):  # processes of the user that were just SIGKILLed may take a moment to go
            if subprocess.run(["userdel", name], capture_output=True).returncode in (0, 6):
                break
            time.sleep(0.1)


def tracebacks(log: str) -> list[str]:
    """Each traceback in a server log, with the line that introduced it."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")), i)
            found.append("\n".join(lines[max(0, i - 1):end + 1])[-3000:])
    return found


def leftovers(home: Path) -> list[str]:
    """Sandbox layers, committed layers and mounts a stopped server left under its state directory,
    and its network: host links and nftables table (named from the same hash as its /run/sandlot
    directory)."""
    found = [str(p) for p in (home / "sandboxes").glob("*")]
    # layers (snapshots, fork, filesystem pauses) nobody holds any more
    found += [str(p) for p in (home / "layers").glob("*") if len(p.name) == 64 or p.name.startswith(".new-")]
    with open("/proc/mounts") as f:
        found += [line.split()[1] for line in f if str(home) + "/" in line]
    server = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    if os.path.isdir("/sys/class/net"):
        found += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(f"sl{server[:6]}-")]
    if os.geteuid() == 0 and shutil.which("nft") and subprocess.run(["nft", "list", "table", "inet", f"sandlot_{server}"],
                                            capture_output=True).returncode == 0:
        found.append(f"nftables table sandlot_{server}")
    return found


def _footprint(home: Path):
    """What the server's sandboxes hold on the host (processes, cgroups, uid claims...); None where
    sandlot is not importable (the older SDK's venv), which leaves the directory and mount checks."""
    try:
        from host_resources import Footprint
    except ImportError:
        return None
    return Footprint(home)


@contextlib.contextmanager
def checked_server(extra_env=None):
    """A server on a fresh home; when it stops, every sandbox it made must be gone (no layer, mount,
    process, cgroup) and its log may hold no traceback (bad input is a 4xx, never a failure)."""
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-"))
    footprint = _footprint(home)
    srv = start_server(home, extra_env=extra_env)
    try:
        yield srv
    finally:
        srv.stop()
    left = leftovers(home)
    held = {kind: found for kind, found in (footprint.resources() if footprint else {}).items() if found}
    failures = tracebacks(srv.log.read_text(errors="replace"))
    shutil.rmtree(home, ignore_errors=True)
    assert not left, f"the test server left sandbox resources behind: {left}"
    assert not held, f"the test server's sandboxes left resources on the host: {held}"
    assert not failures, "the test server logged errors with tracebacks:\n\n" + "\n\n".join(failures)


@contextlib.contextmanager
def sandbox_factory(server: Server, template: str):
    """make(**limits): a sandbox created over REST (with sandlot's `limits` extension) and opened
    with the official e2b SDK (whose environment must point at `server`); all are killed on exit."""
    import httpx
    from e2b import Sandbox

    created = []

    def make(**limits):
        body = {"templateID": template, "timeout": 120, "metadata": {}, "envVars": {}}
        if limits:
            body["limits"] = limits
        r = httpx.post(f"{server.url}/v2/sandboxes", json=body, headers={"X-API-KEY": server.api_key},
                       timeout=120)
        assert r.status_code == 201, r.text
        sbx = Sandbox.connect(r.json()["sandboxID"])
        created.append(sbx)
        return sbx

    try:
        yield make
    finally:
        for sbx in created:
            with contextlib.suppress(Exception):  # already gone is fine
                sbx.kill()


@contextlib.contextmanager
def sdk_environment(server: Server):
    """The official SDKs' environment (docs/e2b.md §1.1) pointed at `server`, while the
    block runs."""
    saved = {key: os.environ.get(key) for key in [*server.env(), "E2B_DEBUG"]}
    os.environ.update(server.env())
    os.environ.pop("E2B_DEBUG", None)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def rest_client(server: Server, timeout: float = 120):
    """An HTTP client for the server's REST API, with its API key."""
    import httpx

    with httpx.Client(base_url=server.url, headers={"X-API-KEY": server.api_key}, timeout=timeout) as client:
        yield client


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def kill_quietly(sbx) -> None:
    try:
        sbx.kill()
    except Exception:  # noqa: BLE001, S110 - best-effort cleanup; the sandbox may be gone already
        pass


def access_token(server: Server, sandbox_id: str) -> str:
    """The sandbox's envd access token, as the control plane hands it out (GET /sandboxes/{id})."""
    import httpx

    r = httpx.get(f"{server.url}/sandboxes/{sandbox_id}", headers={"X-API-KEY": server.api_key}, timeout=30)
    assert r.status_code == 200, r.text
    token = r.json().get("envdAccessToken")
    assert token, "every sandbox must be secured with an envd access token"
    return token


def denials(server: Server, sandbox_id: str) -> list[dict]:
    """The audit trail's `file.denied` rows of a sandbox (what permfs denied its processes), newest first."""
    import httpx

    r = httpx.get(f"{server.url}/audit", params={"sandbox": sandbox_id, "action": "file.denied"},
                  headers={"X-API-KEY": server.api_key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def state_cli(server: Server, *args: str) -> str:
    """`sandlot ARGS --home HOME` on the server's state directory, as its operator runs it (teams,
    keys); its stdout."""
    r = subprocess.run([*server_cmd(), *args, "--home", str(server.home)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def team_key(server: Server, name: str | None = None, *quotas: str) -> tuple[str, str, str]:
    """(team id, key id, key) of a new team (`quotas`: options of `sandlot teams create`)."""
    import json

    name = name or unique("team-")
    team_id = state_cli(server, "teams", "create", name, *quotas).strip()
    made = json.loads(state_cli(server, "keys", "create", f"{name}-key", "--team", name, "--json"))
    return team_id, made["id"], made["key"]
