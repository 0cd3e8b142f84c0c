"""A plain `pip install` of the package, with no extras, gives a working `import sandlot` and
`sandlot serve` (a dependency the extras pulled in by chance once hid that connectrpc failed at
import). Built from this checkout into a fresh venv; the packages come from the configured index."""

from __future__ import annotations

import os
import subprocess
import venv

import httpx
import pytest
from support import API_KEY, REPO, Server, free_port, leftovers, link_templates, wait_until_serving


@pytest.mark.timeout(900)
def test_a_plain_install_imports_and_serves(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
                          capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # nothing of the test extra came along
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "sandlot" in installed and not {"pytest", "e2b", "mypy"} & installed, sorted(installed)

    code = "import sandlot, sandlot.server.app, sandlot.cli.main; from sandlot import Sandbox; print('ok')"
    imported = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert imported.stdout.strip() == "ok", imported.stderr[-3000:]

    home = tmp_path / "home"
    home.mkdir()
    link_templates(home)
    port = free_port()
    log = home / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDLOT_")}
    env.update(SANDLOT_HOME=str(home), SANDLOT_API_KEY=API_KEY, SANDLOT_POOL_SIZE="0")
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(env_dir / "bin" / "sandlot"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    server = wait_until_serving(Server(f"http://127.0.0.1:{port}", API_KEY, home, proc, log), port, timeout=300)
    try:
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
        r = httpx.post(f"{server.url}/sandboxes", json={"templateID": "base", "timeout": 60},
                       headers={"X-API-Key": API_KEY}, timeout=60)
        assert r.status_code == 201, r.text
        r = httpx.delete(f"{server.url}/sandboxes/{r.json()['sandboxID']}", headers={"X-API-Key": API_KEY}, timeout=60)
        assert r.status_code == 204, r.text
    finally:
        server.stop()
    assert not leftovers(home), leftovers(home)
