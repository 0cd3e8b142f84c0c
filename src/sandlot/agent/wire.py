"""The host <-> agent protocol: frames over one unix-socket connection per request.

Stdlib only: this module runs inside sandboxes (python3 >= 3.9) and in the control plane.

A frame is ``kind`` (1 byte) + ``length`` (4 bytes, big endian) + ``payload``.

    J  a JSON object (utf-8)
    O  stdout bytes of a process      E  stderr bytes      P  pty output bytes
    D  file data bytes                Z  end of data (empty payload)

Every connection carries exactly one request. The client sends a ``J`` frame
``{"op": NAME, ...arguments}``; for ``files.write`` it then sends ``D`` frames and one ``Z``;
for ``process.stream_input`` it sends ``J`` frames ``{"data": b64, "pty": bool}`` until it closes.

Replies. A failure is always one ``J`` frame ``{"error": {"code": CODE, "message": TEXT}}`` and
the end of the connection (the agent half-closes, then drops whatever the client still sends until
it closes, so a client in the middle of an upload still reads the error). CODE is a Connect code
name (``not_found``, ``invalid_argument``, ``already_exists``, ``permission_denied``,
``failed_precondition``, ``deadline_exceeded``, ``resource_exhausted``, ``internal``,
``unavailable``, ``unauthenticated`` for a ``user`` that does not exist, as envd answers).

Streams send ``{"keepalive": {}}`` after 50 s of silence. The socket is world-writable inside the
sandbox (for sudo): a peer there that is not root may only use ``ping`` and ``sudo``; the host's
control plane (a peer outside the sandbox's pid namespace) and root may use everything.

Operations (arguments -> reply). ``user`` is a user name inside the sandbox; absent or empty means
the default user (``user``). Relative paths resolve against that user's home.

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
    process.connect  pid | tag       -> same stream as start (output produced from now on)
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
    files.read     path, user        -> {"entry": ENTRY}, D frames, Z
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
                   caller's stdin, stdout, stderr as SCM_RIGHTS fds (see sudo_shim.py). Then the
                   client may send {"signal": N} frames to forward; on its EOF the command gets
                   SIGHUP.  -> {"exit_code": int, "signal": int (0 if it exited)}
                   permission_denied if the sandbox's config has allow_sudo false.

ENTRY = {"name", "type": "file"|"dir"|"symlink"|"other", "path" (absolute), "size", "mode"
(permission bits), "permissions" (ls -l string), "owner", "group", "mtime" (float seconds),
"symlink_target": absolute path | null, "metadata": {k: v}}. A symlink is followed: the entry
describes its target and sets "symlink_target"; type "symlink" means a dangling link.
"""

import json
import struct

JSON = b"J"
STDOUT = b"O"
STDERR = b"E"
PTY = b"P"
DATA = b"D"
END = b"Z"

_HEADER = struct.Struct(">cI")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 16 * 1024 * 1024
CHUNK = 256 * 1024


class WireError(Exception):
    """The peer broke the framing (short read, oversize frame, bad JSON)."""


def encode(kind, payload):
    return _HEADER.pack(kind, len(payload)) + payload


def encode_json(obj):
    return encode(JSON, json.dumps(obj, separators=(",", ":")).encode())


def error_frame(code, message):
    return encode_json({"error": {"code": code, "message": message}})


def split_frame(buf):
    """(kind, payload, bytes used) of the frame at the start of ``buf``, or None until it is whole."""
    if len(buf) < HEADER_SIZE:
        return None
    kind, length = _HEADER.unpack_from(buf)
    if length > MAX_FRAME:
        raise WireError("frame too large: %d bytes" % length)
    end = HEADER_SIZE + length
    if len(buf) < end:
        return None
    return kind, bytes(buf[HEADER_SIZE:end]), end


def decode_json(payload):
    try:
        obj = json.loads(payload)
    except ValueError as e:
        raise WireError("bad JSON frame: %s" % e)
    if not isinstance(obj, dict):
        raise WireError("JSON frame is not an object")
    return obj
