"""The agent's own privileges, set once at start (inside the sandbox's user namespace only).

1. The capability bounding set is cut to the runtime's list, so no process in the sandbox (root
   included) can ever hold more, whatever it execs.
2. The agent then runs as the default user with a few capabilities kept: commands for that user are
   spawned without any uid switch, which keeps CPython's subprocess on its vfork fast path (a full
   fork of the agent costs ~2 ms per command). The kept effective set is what switching users and
   signalling them needs; the file capabilities come back into effect only while the agent acts as
   root (setfsuid(0), see users.acting_as), so file operations as the user are checked like the user's.
"""

import os
import struct

from . import libc

# capability numbers (linux/capability.h)
CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}
# what the agent keeps in effect while running as the default user
_EFFECTIVE = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL")

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
_CAP_V3 = 0x20080522


_CAP_HEADER = struct.pack("=Ii", _CAP_V3, 0)  # struct __user_cap_header_struct, this process


def _permitted():
    """The permitted set, as a 64-bit mask (from /proc: capget would need a writable buffer)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    raise OSError("no CapPrm in /proc/self/status")


def limit_bounding_set(allowed):
    """Drop every capability not in ``allowed`` (names) from the bounding set."""
    keep = {CAPS[name] for name in allowed if name in CAPS}
    for cap in range(64):
        if cap in keep:
            continue
        if libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0:
            break  # past the last capability this kernel knows
        libc.check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0))


def run_as(uid, gid):
    """Become ``uid``/``gid`` (saved ids stay 0) and keep the spawning capabilities in effect."""
    libc.check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
    os.setresgid(gid, gid, 0)
    os.setresuid(uid, uid, 0)
    permitted = _permitted()
    effective = 0
    for name in _EFFECTIVE:
        effective |= 1 << CAPS[name]
    effective &= permitted
    # struct __user_cap_data_struct[2]: effective, permitted, inheritable (none), low word first
    data = struct.pack("=6I", effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, 0,
                       effective >> 32, permitted >> 32, 0)
    libc.check(libc.capset(_CAP_HEADER, data))
