"""Helpers for the permission tests (conftest.py has the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

from sandlot import Sandbox

HERE = Path(__file__).parent
PROBE = (HERE / "probe.py").read_text()
W = "/workspace"

# The project every test here works on: a bit of everything AgentFense's presets treat differently.
PROJECT = {
    "main.py": "print('main')\n",
    "README.md": "# project\n",
    ".env": "API_KEY=secret\n",
    ".env.local": "LOCAL=1\n",
    "secrets/api.key": "KEY\n",
    "secrets/public.key": "PUBLIC\n",
    "certs/server.pem": "PEM\n",
    "credentials.json": "{}\n",
    "config/db.yaml": "password: hunter2\n",
    "docs/guide.md": "guide\n",
    "src/app.py": "app = 1\n",
    "output/result.txt": "old result\n",
    ".git/HEAD": "ref: refs/heads/main\n",
}


def write_project(root: Path, files: dict[str, str] = PROJECT) -> Path:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return root


def probe(sandbox: Sandbox, *args: str, user: str = "user") -> dict:
    """Run probe.py in the sandbox (copied to its /tmp by the fixtures) and return its outcomes."""
    result = sandbox.commands.run("python3 /tmp/probe.py " + " ".join(f"'{a}'" for a in args), user=user,
                                  check=False, timeout=60)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def outcomes(result: dict) -> set[str]:
    """The distinct outcomes of a probe ("ok", "ENOENT", ...)."""
    return {v for v in result.values() if isinstance(v, str)}
