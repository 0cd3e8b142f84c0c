"""No process creation after start (SecurityPolicy.allow_subprocess False).

The host builds a seccomp filter (runtimes/seccomp.py: nofork_bpf) that denies fork, vfork and
clone of a new process (threads stay possible; clone3 is ENOSYS for the whole sandbox already) and
puts it in RUN_DIR (agent.json's ``process_filter``). Whatever sandlot starts for the sandbox loads
it between fork and exec: the agent for commands, terminals and sessions, the code-context driver
(kernels/spawn.py) for each kernel. A filter cannot be taken back, so those processes and all they
exec can never create another. sandlot's own helpers (the agent, the driver) stay unfiltered, and
in-sandbox callers may not ask the agent to start anything (agent/server.py).
"""

import ctypes
import os

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _Program(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def loader(path):
    """A preexec_fn that loads the filter at ``path`` (read now, in the parent: the child only
    calls prctl)."""
    with open(path, "rb") as f:
        code = f.read()
    buf = ctypes.create_string_buffer(code, len(code))
    program = _Program(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong

    def load():
        if libc.prctl(PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)) != 0 or \
                libc.prctl(PR_SET_SECCOMP, ulong(SECCOMP_MODE_FILTER), ctypes.byref(program), ulong(0), ulong(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "cannot load the no-subprocess filter: " + os.strerror(err))

    load.keep = (buf, program)  # alive as long as the function
    return load
