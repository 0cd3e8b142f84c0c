"""The sandbox's settings, read once from agent.json at start."""

import json

envs = {}  # sandbox-wide environment variables, given to every process
default_user = "user"  # whose identity a request without ``user`` runs with
allow_sudo = False  # closed unless the runtime says otherwise
keepalive_interval = 50.0  # seconds of silence after which a stream gets {"keepalive": {}} (envd's)
root_caps = None  # capability names the bounding set keeps (None: leave it alone, as in host tests)
max_list_entries = 100_000  # files.list refuses larger listings (they would stall the agent)
run_as_default_user = False  # see privileges.run_as: the fast spawn path for the default user
output_replay_bytes = 64 * 1024  # output a process keeps to replay to a client that connects later


def load(path):
    global envs, default_user, allow_sudo, keepalive_interval, root_caps, run_as_default_user, max_list_entries
    global output_replay_bytes
    with open(path) as f:
        data = json.load(f)
    envs = {str(k): str(v) for k, v in (data.get("envs") or {}).items()}
    default_user = data.get("default_user") or default_user
    allow_sudo = bool(data.get("allow_sudo", allow_sudo))
    keepalive_interval = float(data.get("keepalive_interval", keepalive_interval))
    root_caps = data.get("root_caps", root_caps)
    run_as_default_user = bool(data.get("run_as_default_user", run_as_default_user))
    max_list_entries = int(data.get("max_list_entries", max_list_entries))
    output_replay_bytes = int(data.get("output_replay_bytes", output_replay_bytes))
