"""The host <-> sandbox contract, stated once: where sandlot's things are inside a sandbox, the
agent's settings (agent.json), and the agent's operations. The frames that carry them: wire.py.

Stdlib only and cheap to import (no dataclasses, whose import costs the agent ~8 ms per sandbox
start): this runs inside sandboxes with the template's python3 (>= 3.9) and in the control plane.

Who uses what: runtimes/ installs the in-sandbox tree (CODE_DIR), binds RUN_DIR and the sudo shim,
writes AgentConfig and starts `agent_command()`; agent/ loads AgentConfig and routes requests from
OPERATIONS; server/agent_client.py sends them by these names; server/code_contexts.py starts
KERNEL_DRIVER. A new operation: a name and route here, its doc below, its handler in agent/, a
method in server/agent_client.py (tests/agent/test_contract.py checks the first three agree).

Operations (arguments -> reply).

``user`` is a user name inside the sandbox; absent or empty means the default user (agent.json's
``default_user``). Relative paths resolve against that user's home. The socket is world-writable
inside the sandbox (for sudo): a peer there that is not root may only use the ops in UNPRIVILEGED;
the host's control plane (a peer outside the sandbox's pid namespace) and root may use everything.

A connection carries one request. A request from the host's control plane that carries no fds may
say ``keep: true``: once its op is over with everything of it sent (a reply, or a stream's last
frame), the agent reads the next request on the same connection instead of closing it, and waits
for it as long as the client keeps the connection open. An error reply still ends the connection.

    ping                                 -> {"ok": true, "pid": agent_pid}
    env                                  -> {"envs": {..sandbox-wide env vars..}}
    process.start  cmd, args, envs, cwd, user, pty: {cols, rows} | null, stdin: bool, tag,
                   timeout_ms (0 = none; the agent kills the process at the deadline),
                   internal: bool (sandlot's own helper, e.g. the code-context driver: left out
                   of process.list unless it asks for all), stdio_fds: bool (the request carries
                   two fds as SCM_RIGHTS, the process's stdin and stdout: the caller talks to it
                   directly, and only stderr comes on this stream)
                   -> {"start": {"pid": N}}, then O/E/P frames and {"keepalive": {}},
                      then {"end": {"exit_code": int, "exited": bool, "status": str, "error": str?}}
                   The process outlives the connection (background commands, reconnect). It runs
                   in its own session; signals and the deadline go to its process group. The end
                   comes when it exits: children that keep its stdout open do not delay it. A tag
                   of a running process is already_exists; a missing cmd or cwd invalid_argument.
    process.connect  pid | tag       -> same stream as start: first the process's latest output
                                        (up to output_replay_bytes), then what it prints from now on
    process.list   all: bool         -> {"processes": [{"pid", "tag", "cmd", "args", "envs", "cwd"}]}
    process.input    pid | tag, data (base64), pty: bool   -> {}
    process.stream_input  pid | tag  -> client sends J frames {"data": b64, "pty": bool}; on EOF
                                        the agent replies {}
    process.close_stdin  pid | tag   -> {}
    process.signal   pid | tag, signal (int)               -> {}
    process.resize   pid | tag, cols, rows                 -> {}
    files.stat     path, user        -> {"entry": ENTRY}
    files.list     path, depth, user -> {"entries": [ENTRY, ...]}
    files.mkdir    path, user        -> {"entry": ENTRY}   (already_exists if a directory is there)
    files.move     source, destination, user  -> {"entry": ENTRY}
    files.remove   path, user        -> {}                 (a missing path is not an error)
    files.read     path, user        -> {"entry": ENTRY, "length": int | null}, D frames, Z
                   (length: the bytes the D frames will hold, when the agent can promise them
                   up front; null: read to the file's end. A file that ends short of a promised
                   length is an error frame instead of Z; what it grows by after the open is
                   not sent)
    files.write    path, user, metadata: {k: v} | null, append: bool
                   then D frames and Z from the client  -> {"entry": ENTRY}
                   (parents are created; ownership is the user's; metadata replaces xattrs,
                   except that an append without metadata keeps them)
    files.watch    path, recursive, include_entry  -> {"start": {}}, then
                   {"event": {"name": rel_path, "type": "create|write|remove|rename|chmod",
                   "entry": ENTRY?}} and {"keepalive": {}} until the client closes (or the
                   directory goes away). Events of a change made through files.* are sent
                   before that op's reply.
    sudo           argv, user ("root" if absent), cwd, envs; the request frame carries the
                   caller's stdin, stdout, stderr as SCM_RIGHTS fds (see agent/sudo_shim.py). Then the
                   client may send {"signal": N} frames to forward; on its EOF the command gets
                   SIGHUP.  -> {"exit_code": int, "signal": int (0 if it exited)}
                   permission_denied if the sandbox's config has allow_sudo false.
    session.create id (optional: made up if absent), user, cwd, envs
                   -> {"session": SESSION}   (already_exists for an id in use; the shell's login
                   profile has run when this answers; see agent/sessions.py for how it works)
    session.exec   id, cmd, stdin (base64) | null (null: /dev/null), timeout_ms (0 = none), announce
                   -> {"start": {"pid": the shell's}} once it runs (if announce), O/E frames and
                      {"keepalive": {}}, then {"end": {"exit_code": int, "timed_out": bool,
                      "interrupted": bool, "shell_exited": bool}}
                   Runs ``cmd`` in the session's shell, after the session's earlier commands.
                   At the deadline, or when the client leaves, the command is interrupted like
                   Ctrl-C in a terminal (then killed) and the shell stays; ``shell_exited``: the
                   shell itself ended (``exit``), and the session with it.
    session.get    id                -> {"session": SESSION}
    session.list                     -> {"sessions": [SESSION, ...]}
    session.delete id                -> {}   (its shell and everything it started are killed)

ENTRY = {"name", "type": "file"|"dir"|"symlink"|"other", "path" (absolute), "size", "mode"
(permission bits), "permissions" (ls -l string), "owner", "group", "mtime" (float seconds),
"symlink_target": absolute path | null, "metadata": {k: v}}. A symlink is followed: the entry
describes its target and sets "symlink_target"; type "symlink" means a dangling link.

SESSION = {"id", "user", "pid" (the shell's), "cwd" (the shell's current directory), "envs" (given
at create), "created_at" (unix seconds), "busy" (a command is running)}.
"""

from .wire import dumps, loads

# ---- paths inside a sandbox ----------------------------------------------------------------------

CODE_ROOT = "/opt/sandlot"  # on the agent's sys.path
# The in-sandbox tree, a read-only bind: package `sandlot` with only agent/, protocol/wire.py and
# contract.py, and kernels/ (the code-context driver), under empty __init__ files.
CODE_DIR = CODE_ROOT + "/sandlot"
KERNEL_DRIVER = CODE_DIR + "/kernels/driver.py"
RUN_DIR = "/run/sandlot"  # bound from a host directory of the sandbox's own; its root owns it
AGENT_SOCKET_NAME = "agent.sock"  # in RUN_DIR: made by the agent as root inside, world-writable
AGENT_CONFIG_NAME = "agent.json"  # in RUN_DIR: AgentConfig, written by the runtime
# Next to the agent's socket: one private directory per session (its FIFOs, command files), made by
# the agent as root inside, so no sandbox user can plant anything there.
SESSIONS_DIR_NAME = "sessions"
NOFORK_FILTER_NAME = "nofork.bpf"  # in RUN_DIR, when the sandbox may not create processes
# A Python import hook for SecurityPolicy.blocked_imports (advisory): a sitecustomize on PYTHONPATH
IMPORT_GUARD_DIR = CODE_DIR + "/agent/importguard"
AGENT_SOCKET = RUN_DIR + "/" + AGENT_SOCKET_NAME
AGENT_CONFIG = RUN_DIR + "/" + AGENT_CONFIG_NAME
# agent/sudo_shim.py is bound here. It is a lone script (python3 -S), so it names AGENT_SOCKET
# itself; tests/agent/test_contract.py holds the two equal.
SUDO_SHIM_PATH = "/usr/bin/sudo"


def agent_command(python, code_root=CODE_ROOT, socket=AGENT_SOCKET, config=AGENT_CONFIG):
    """How the agent is started: the template's python3 without site-packages (-S: stdlib only) and
    without writing .pyc files (-B: its tree is read-only and comes precompiled)."""
    boot = "import sys; sys.path.insert(0, %r); from sandlot.agent.main import main; main()" % code_root
    return [python, "-S", "-B", "-c", boot, "--socket", socket, "--config", config]


# ---- agent.json ----------------------------------------------------------------------------------


class AgentConfig:
    """A sandbox's settings: written by its runtime as agent.json, read once by the agent at start.
    Defaults are closed (no sudo); keys the agent does not know are ignored, so a newer control
    plane can still start an older agent."""

    __slots__ = ("envs", "default_user", "allow_sudo", "root_caps", "run_as_default_user",
                 "keepalive_interval", "max_list_entries", "process_filter", "max_output_bytes", "ready_fd",
                 "output_replay_bytes")

    def __init__(self, envs=None, default_user="user", allow_sudo=False, root_caps=None,
                 run_as_default_user=False, keepalive_interval=50.0, max_list_entries=100000,
                 process_filter=None, max_output_bytes=0, ready_fd=None, output_replay_bytes=64 * 1024):
        # sandbox-wide environment variables, given to every process
        self.envs = {str(k): str(v) for k, v in (envs or {}).items()}
        self.default_user = default_user or "user"  # whose identity a request without ``user`` runs with
        self.allow_sudo = bool(allow_sudo)  # the ``sudo`` op (root inside the sandbox's user namespace)
        # capability names the agent's bounding set keeps (None: leave it alone, as in host tests)
        self.root_caps = None if root_caps is None else [str(c) for c in root_caps]
        self.run_as_default_user = bool(run_as_default_user)  # see agent/privileges.run_as
        self.keepalive_interval = float(keepalive_interval)  # seconds of silence before a keepalive (envd's)
        self.max_list_entries = int(max_list_entries)  # files.list refuses larger listings (they stall the agent)
        # a seccomp filter (a file inside) loaded into every process started for the sandbox: no
        # process creation after start (agent/nofork.py); None: processes may fork
        self.process_filter = str(process_filter) if process_filter else None
        # output one command may return (its stdout and stderr together); past it, a marker and
        # nothing more; 0: no limit
        self.max_output_bytes = int(max_output_bytes)
        # an fd the agent inherits and writes one byte to once its socket listens, then closes: the
        # runtime waits on it instead of polling the socket (None: no one waits that way)
        self.ready_fd = None if ready_fd is None else int(ready_fd)
        # output a process keeps to replay to a client that connects later (agent/processes.py)
        self.output_replay_bytes = int(output_replay_bytes)

    def to_json(self):
        return dumps({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def from_json(cls, text):
        data = loads(text)
        if not isinstance(data, dict):
            raise ValueError("agent.json is not an object")
        return cls(**{k: v for k, v in data.items() if k in cls.__slots__})

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(f.read())


READY_FD = 7  # where the namespace runtime places the agent's ready pipe (runtimes/sandbox_process.py)

# ---- operations ----------------------------------------------------------------------------------

PING = "ping"
ENV = "env"
PROCESS_START = "process.start"
PROCESS_CONNECT = "process.connect"
PROCESS_LIST = "process.list"
PROCESS_INPUT = "process.input"
PROCESS_STREAM_INPUT = "process.stream_input"
PROCESS_CLOSE_STDIN = "process.close_stdin"
PROCESS_SIGNAL = "process.signal"
PROCESS_RESIZE = "process.resize"
FILES_STAT = "files.stat"
FILES_LIST = "files.list"
FILES_MKDIR = "files.mkdir"
FILES_MOVE = "files.move"
FILES_REMOVE = "files.remove"
FILES_READ = "files.read"
FILES_WRITE = "files.write"
FILES_WATCH = "files.watch"
SUDO = "sudo"
SESSION_CREATE = "session.create"
SESSION_EXEC = "session.exec"
SESSION_GET = "session.get"
SESSION_LIST = "session.list"
SESSION_DELETE = "session.delete"

# op -> (module of the agent package, its handler). The agent imports a module on its first use,
# so an idle agent holds only what ping needs.
OPERATIONS = {
    PING: ("server", "ping"),
    ENV: ("server", "env"),
    PROCESS_START: ("processes", "start"),
    PROCESS_CONNECT: ("processes", "connect"),
    PROCESS_LIST: ("processes", "list_processes"),
    PROCESS_INPUT: ("processes", "send_input"),
    PROCESS_STREAM_INPUT: ("processes", "stream_input"),
    PROCESS_CLOSE_STDIN: ("processes", "close_stdin"),
    PROCESS_SIGNAL: ("processes", "send_signal"),
    PROCESS_RESIZE: ("processes", "resize"),
    FILES_STAT: ("files", "stat"),
    FILES_LIST: ("files", "list_dir"),
    FILES_MKDIR: ("files", "mkdir"),
    FILES_MOVE: ("files", "move"),
    FILES_REMOVE: ("files", "remove"),
    FILES_READ: ("files", "read"),
    FILES_WRITE: ("files", "write"),
    FILES_WATCH: ("watch", "watch"),
    SUDO: ("sudo", "sudo"),
    SESSION_CREATE: ("sessions", "create"),
    SESSION_EXEC: ("sessions", "exec_command"),
    SESSION_GET: ("sessions", "get"),
    SESSION_LIST: ("sessions", "list_sessions"),
    SESSION_DELETE: ("sessions", "delete"),
}
# What a process inside the sandbox that is not root may ask for: the socket is world-writable so
# that the sudo shim reaches it, and anything else would let a user start processes as root.
UNPRIVILEGED = frozenset((PING, SUDO))
