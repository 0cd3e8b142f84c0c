"""How routes find a sandbox and show it: the running one a path names, and E2B's JSON of a sandbox
(the create answer and the detail of GET /sandboxes/{id}). Shared by the route modules (api.py,
sessions.py, packages_api.py, workspaces.py, snapshots.py, codebases.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request

from .. import _exceptions as E
from ..runtimes.policy import Limits, NetworkPolicy
from .network_api import network_json
from .live import ENVD_VERSION, LiveSandbox, Sandboxes
from .store import SandboxRecord

CLIENT_ID = "sandlot"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def running(request: Request) -> LiveSandbox:
    sandbox_id = request.path_params["sandbox_id"]
    sandboxes: Sandboxes = request.app.state.service
    live = sandboxes.get_running(sandbox_id)
    if live is None:
        sandboxes.record(sandbox_id)  # NotFound if unknown
        raise E.SandboxNotRunning(f"sandbox \"{sandbox_id}\" is paused")
    return live


def _internet(rec: SandboxRecord) -> bool:
    egress = (rec.network or {}).get("egress")
    return bool(egress) and NetworkPolicy.from_json(egress).open_to_all()


def sandbox_json(live: LiveSandbox, domain: str | None = None) -> dict:
    rec = live.record
    return {
        "templateID": rec.template, "sandboxID": rec.id, "clientID": CLIENT_ID, "alias": rec.template,
        "envdVersion": ENVD_VERSION, "envdAccessToken": rec.access_token, "trafficAccessToken": rec.access_token,
        "domain": domain,
    }


def domain_of(request: Request) -> str | None:
    return request.app.state.config.domain


def detail_json(rec: SandboxRecord, domain: str | None = None) -> dict:
    limits = Limits(**rec.limits)
    return {
        "templateID": rec.template, "sandboxID": rec.id, "clientID": CLIENT_ID, "alias": rec.template,
        "startedAt": rfc3339(rec.started_at), "endAt": rfc3339(rec.end_at), "envdVersion": ENVD_VERSION,
        "envdAccessToken": rec.access_token, "cpuCount": max(1, round(limits.cpu_count)),
        "memoryMB": limits.memory_mb, "diskSizeMB": limits.disk_mb, "state": rec.state,
        "metadata": rec.metadata, "domain": domain, "allowInternetAccess": _internet(rec),
        "network": network_json(rec),
        "lifecycle": {"autoResume": rec.auto_resume, "onTimeout": "pause" if rec.auto_pause else "kill"},
        **({"pauseMode": rec.pause_mode} if rec.state == "paused" and rec.pause_mode else {}),
        "volumeMounts": rec.volume_mounts,
    }
