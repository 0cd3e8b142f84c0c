"""The sandbox's settings, read once from agent.json at start."""

import json

envs = {}  # sandbox-wide environment variables, given to every process
default_user = "user"  # whose identity a request without ``user`` runs with
allow_sudo = False  # closed unless the runtime says otherwise
keepalive_interval = 50.0  # seconds of silence after which a stream gets {"keepalive": {}} (envd's)


def load(path):
    global envs, default_user, allow_sudo, keepalive_interval
    with open(path) as f:
        data = json.load(f)
    envs = {str(k): str(v) for k, v in (data.get("envs") or {}).items()}
    default_user = data.get("default_user") or default_user
    allow_sudo = bool(data.get("allow_sudo", allow_sudo))
    keepalive_interval = float(data.get("keepalive_interval", keepalive_interval))
