"""Starting Jupyter kernels: what driver.py needs before its event loop exists.

Stdlib only and light to import: the driver starts the default python kernel with this first
thing, so the kernel's own start (~0.5 s) overlaps the driver's imports (asyncio alone ~60 ms).
"""

import json
import os
import secrets
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STARTUP = os.path.join(HERE, "startup.py")
HOME = os.path.expanduser("~")
KERNELS = {
    # language -> (module run with python3 -m, extra argv). The history database is kept in
    # memory: nothing to write at start, nothing left in the sandbox's home. _execute_sleep:
    # ipykernel sleeps 0.5 ms before each execute_reply, to let output written to fd 1 and 2
    # directly reach its stream first; startup.py waits for exactly that instead.
    "python": ("ipykernel_launcher", ["--HistoryManager.hist_file=:memory:", "--IPythonKernel._execute_sleep=0",
                                      "--IPKernelApp.exec_files=" + STARTUP]),
    "bash": ("bash_kernel", []),
}


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


def spawn_kernel(run_dir, kernel_id, language, cwd, envs):
    """Start a kernel in its own session; returns (Popen, connection info, connection file).
    OSError if it cannot."""
    module, extra = KERNELS[language]
    info = {"transport": "ipc", "ip": os.path.join(run_dir, "k-" + kernel_id[:12]),
            "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
            "key": secrets.token_hex(16), "signature_scheme": "hmac-sha256", "kernel_name": language}
    conn = os.path.join(run_dir, "k-%s.json" % kernel_id)
    with open(conn, "w") as f:
        json.dump(info, f)
    env = dict(os.environ, **envs)
    # The kernel exits when its parent (this driver) goes; no debugger noise on its stderr.
    env.update(JPY_PARENT_PID=str(os.getpid()), PYDEVD_DISABLE_FILE_VALIDATION="1")
    popen = subprocess.Popen([sys.executable, "-m", module, "-f", conn, *extra], cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    raise_oom_score(popen.pid)
    return popen, info, conn


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
    connection file) or None)."""
    run_dir = new_run_dir()
    try:
        return run_dir, spawn_kernel(run_dir, secrets.token_hex(16), "python", HOME, {})
    except OSError:
        return run_dir, None  # the driver reports it when it starts the context itself
