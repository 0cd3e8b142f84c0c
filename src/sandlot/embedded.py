"""A sandlot server for this process, started when no server is configured.

`Sandbox.create()` without `api_url` or $SANDLOT_API_URL lands here: a `sandlot serve` child on a
free loopback port with a random API key, alive until this interpreter exits. It keeps its state in
a private directory but shares built templates with the machine-wide state directory, so only the
first use on a machine pays for building them. Like every sandlot server it needs root.

It keeps warm pools of the templates already built only: a template nobody asked for is not built
behind the user's back (a create that needs one waits for its build, with progress). Exiting is
prompt whatever is building (the server stops its build workers) and leaves nothing: no server,
sandbox, mount or private directory.

The SDK finds `embedded_server` through the `sandlot.embedded` entry point (pyproject.toml), so
`client/` imports no server code.

Run as `python -m sandlot.embedded serve ...` it is the child itself: `sandlot serve`, plus
a watchdog that stops the server if its parent dies without running its exit handlers (kill -9).
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ._exceptions import SandlotError

START_TIMEOUT = float(os.environ.get("SANDLOT_EMBEDDED_START_TIMEOUT", "900"))  # first run builds `base`
STOP_GRACE = 20.0  # seconds between SIGTERM (the server kills its sandboxes, ~0.1 s each) and SIGKILL
POOLED = ("base", "code-interpreter")  # what a server keeps warm by default, if already built


@dataclass
class EmbeddedServer:
    url: str
    api_key: str
    proc: subprocess.Popen
    home: Path
    log: Path

    def stop(self) -> None:
        """SIGTERM, a grace period for the server to kill its sandboxes, then SIGKILL and the
        clean-up it could not do."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                _kill_leftovers(self.home)
        _remove_home(self.home)


def _kill_leftovers(home: Path) -> None:
    """Kill the sandboxes a dead server left in `home` (as its next start would)."""
    from .runtimes import make_runtime

    runtime = make_runtime(home)
    try:
        for sandbox_id in runtime.leftovers():
            runtime.kill(sandbox_id)
    finally:
        runtime.close()


def _remove_home(home: Path) -> None:
    """Delete the private state directory; never through a mount left inside it."""
    from .hostfs import remove_tree

    try:
        remove_tree(home, detach_mounts=True)
    except OSError as e:
        print(f"sandlot: could not remove {home}: {e}", file=sys.stderr)


_lock = threading.Lock()
_server: EmbeddedServer | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private_home() -> Path:
    from .server.config import default_home

    shared = default_home()
    home = Path(tempfile.mkdtemp(prefix="sandlot-embedded-"))
    for name in ("templates", "cache"):  # built root filesystems and downloads are worth sharing
        (shared / name).mkdir(parents=True, exist_ok=True)
        (home / name).symlink_to(shared / name)
    return home


def _wait_healthy(server: EmbeddedServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log.read_text(errors="replace")[-3000:]
            raise SandlotError(f"the embedded sandlot server exited with {server.proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{server.url}/_sandlot/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise SandlotError(f"the embedded sandlot server did not start within {START_TIMEOUT:.0f}s (log: {server.log})")


def start(api_key: str, build: Sequence[str] = ("base",), pooled: Sequence[str] = POOLED,
          pool_size: int | None = None) -> EmbeddedServer:
    """A `sandlot serve` child on a free loopback port with `api_key` and a private state directory
    (built templates and downloads shared with the machine's), healthy when returned. `build` are
    built first, in view (a first use on a machine builds `base` here, not hidden in the server's
    log); of `pooled`, those built are kept warm (`pool_size` each, else the server's default).
    The caller stops it (`stop()`)."""
    from .templates import TemplateStore
    from .templates.progress import build_in_view

    home = _private_home()
    try:
        store = TemplateStore(home)
        for name in build:
            build_in_view(store, name)
        port = _free_port()
        env = {"SANDLOT_POOL_TEMPLATES": ",".join(t for t in pooled if store.is_built(t)),
               **({"SANDLOT_POOL_SIZE": str(pool_size)} if pool_size is not None else {}),
               **os.environ, "SANDLOT_API_KEY": api_key, "SANDLOT_HOME": str(home)}
        log = home / "server.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", __name__, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # Ctrl-C in our terminal is ours to handle, not the server's
    except BaseException:
        _remove_home(home)
        raise
    server = EmbeddedServer(f"http://127.0.0.1:{port}", api_key, proc, home, log)
    _wait_healthy(server)
    return server


def embedded_server() -> EmbeddedServer:
    """This process's server, started (and waited for) on first call, stopped at exit."""
    global _server
    with _lock:
        if _server is not None and _server.proc.poll() is None:
            return _server
        _server = start("sl_" + secrets.token_hex(20))
        atexit.register(_server.stop)
        return _server


def _watch_parent() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down cleanly and the sandboxes are killed


if __name__ == "__main__":
    threading.Thread(target=_watch_parent, name="parent-watchdog", daemon=True).start()
    # uvicorn re-raises SIGTERM once it has shut down; as an exception it lets the cleanup below run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    from .cli.main import app

    try:
        app(prog_name="sandlot")
    finally:  # the private state directory dies with the server, even if our parent could not clean up
        _remove_home(Path(os.environ["SANDLOT_HOME"]))
