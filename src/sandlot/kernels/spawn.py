"""Starting kernels: what driver.py needs before its event loop exists.

Stdlib only and light to import: the driver starts the default python kernel with this first
thing, so the kernel's own start (~0.5 s) overlaps the driver's imports (asyncio alone ~60 ms).

The driver runs as root, as E2B's kernels do (as the sandbox's default user where root is not to
be had); `--user NAME` names the sandbox's default user: contexts start in its home, with HOME set
to it, whoever runs them.
"""

import errno
import json
import os
import pwd
import secrets
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STARTUP = os.path.join(HERE, "startup.py")


def _home_of_default_user(argv):
    try:
        return pwd.getpwnam(argv[argv.index("--user") + 1]).pw_dir
    except (ValueError, IndexError, KeyError):
        return os.path.expanduser("~")


HOME = _home_of_default_user(sys.argv)
# A kernel's own dot files (IPython's profile) go to the home of whoever runs it, not into HOME:
# files of root's in the default user's home would stand in the way of that user's own tools.
try:
    OWN_HOME = pwd.getpwuid(os.geteuid()).pw_dir
except KeyError:
    OWN_HOME = HOME
# language -> argv of its Jupyter kernel ({conn}: the connection file)
KERNELS = {
    # The history database is kept in memory: nothing to write at start, nothing left in the
    # sandbox's home. _execute_sleep: ipykernel sleeps 0.5 ms before each execute_reply, to let
    # output written to fd 1 and 2 directly reach its stream first; startup.py waits for exactly
    # that instead.
    "python": [sys.executable, "-m", "ipykernel_launcher", "-f", "{conn}", "--HistoryManager.hist_file=:memory:",
               "--IPythonKernel._execute_sleep=0", "--IPKernelApp.exec_files=" + STARTUP],
    "bash": [sys.executable, "-m", "bash_kernel", "-f", "{conn}"],
    "r": ["R", "--slave", "--no-restore", "-e", "IRkernel::main()", "--args", "{conn}"],
}
# ipykernel exits when its parent (this driver) goes (JPY_PARENT_PID); IRkernel and the runners do
# not, or not while a run keeps them busy: killed with the driver (util-linux's setpriv, in every
# Debian template) instead of orphaned.
SETPRIV = "/usr/bin/setpriv"


def die_with_driver(argv):
    return [SETPRIV, "--pdeathsig", "KILL", *argv] if os.path.exists(SETPRIV) else argv


def find(program):
    """shutil.which's answer, without importing shutil before the default kernel starts."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def not_dumpable():
    """Close this process's /proc/<pid>/mem, fd and environ to the sandbox's own processes: kernel
    code runs as the driver's user and could otherwise rewrite the driver, or take a copy of the
    pipes to the control plane, to answer for runs that are not its own."""
    import ctypes

    PR_SET_DUMPABLE = 4
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def new_run_dir():
    """A private directory for connection files and ipc sockets."""
    path = os.path.join("/tmp", ".sandlot-kernels-" + secrets.token_hex(6))
    os.mkdir(path, 0o700)
    return path


def environment(envs):
    """The environment of a context's process: the driver's, HOME the default user's, then the
    context's own variables."""
    return dict(os.environ, HOME=HOME, **envs)


def spawn_kernel(run_dir, kernel_id, language, cwd, envs):
    """Start a kernel in its own session; returns (Popen, connection info, connection file, ipc
    socket paths). OSError if it cannot."""
    argv = KERNELS[language]
    if argv[0] != sys.executable and find(argv[0]) is None:  # said here, not by setpriv (below)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    info = {"transport": "ipc", "ip": os.path.join(run_dir, "k-" + kernel_id[:12]),
            "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
            "key": secrets.token_hex(16), "signature_scheme": "hmac-sha256", "kernel_name": language}
    conn = os.path.join(run_dir, "k-%s.json" % kernel_id)
    with open(conn, "w") as f:
        json.dump(info, f)
    env = environment(envs)
    # The kernel exits when its parent (this driver) goes; no debugger noise on its stderr.
    env.update(JPY_PARENT_PID=str(os.getpid()), PYDEVD_DISABLE_FILE_VALIDATION="1",
               IPYTHONDIR=os.path.join(OWN_HOME, ".ipython"))
    argv = [conn if a == "{conn}" else a for a in argv]
    if argv[0] != sys.executable:
        argv = die_with_driver(argv)
    popen = subprocess.Popen(argv, cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    raise_oom_score(popen.pid)
    sockets = {name: "%s-%d" % (info["ip"], info[name + "_port"])  # jupyter_client's (and IRkernel's) ipc paths
               for name in ("shell", "iopub", "stdin", "control", "hb")}
    return popen, info, conn, sockets


def raise_oom_score(pid):
    """Make a kernel the OOM killer's first choice in the sandbox: a memory bomb takes its kernel,
    not the driver or the agent. Raising the score needs no privilege."""
    try:
        with open("/proc/%d/oom_score_adj" % pid, "w") as f:
            f.write("800")
    except OSError:
        pass


def early_default():
    """The default python context's kernel, started before anything else: (run dir, (Popen, info,
    connection file, sockets) or None)."""
    run_dir = new_run_dir()
    try:
        return run_dir, spawn_kernel(run_dir, secrets.token_hex(16), "python", HOME, {})
    except OSError:
        return run_dir, None  # the driver reports it when it starts the context itself
