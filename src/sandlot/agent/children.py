"""The agent's children, and its duty as the sandbox's pid 1: reaping orphans.

The runtime starts the agent as pid 1 of the sandbox's pid namespace (bwrap --as-pid-1): no bwrap
process runs inside, so none can be opened through /proc or pidfd by the sandbox's root (bwrap's
own pid 1 was dumpable and held the host's log file). Every process whose parent exits is handed
to pid 1; ``spawn.wait`` reaps the children the agent started itself, ``reap_orphans`` the rest.
Stdlib ``os`` only: it runs at every SIGCHLD, and an idle agent must not import subprocess.
"""

import os

started = set()  # pids spawn.popen() started and spawn.wait() has not reaped yet


def reap_orphans():
    """Reap every exited child the agent did not start. waitid(WNOWAIT) shows one exited child
    without reaping it: one of ours stops the sweep (its own wait reaps it, then sweeps again)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in started:
            return
        try:
            os.waitpid(info.si_pid, os.WNOHANG)
        except ChildProcessError:
            pass
