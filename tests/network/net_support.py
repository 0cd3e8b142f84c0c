"""Constants and helpers of the network suite (the fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "198.18.0.1"
ALLOWED, OTHER, NEIGHBOUR, DNS = "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.53"
METADATA = "169.254.169.254"
ZONE = {
    "allowed.test": [ALLOWED],
    "other.test": [OTHER],
    "a.wild.test": [NEIGHBOUR],
    # DNS rebinding: allowed names whose answers are closed addresses
    "metadata.test": [METADATA],
    "host.test": [HOST],
    "loop.test": ["127.0.0.1"],
}


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
