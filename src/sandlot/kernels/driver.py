"""The in-sandbox code-context driver: Jupyter kernels (and runners) behind a JSON-lines pipe.

Runs inside a sandbox on the template's python3, which must have `jupyter_client` (and `ipykernel`
for python contexts, `bash_kernel` for bash ones, R with IRkernel for r ones): the control plane
starts it through the agent (`python3 -B driver.py --user NAME`, as root: see spawn.py) and talks
to it over its stdin and stdout. One driver per sandbox owns every code context: one kernel each,
started by the driver itself (so its pid is known for interrupts and deaths) and driven over
jupyter_client's protocol on ipc sockets in a private directory. javascript, typescript and java
contexts run a runner of sandlot's own instead (runners.py).

Requests, one JSON object per line on stdin: {"id": N, "op": OP, ...}

    create    language, cwd, envs {k: v}, variables {k: json}  -> {"context": CONTEXT}
    list                                                       -> {"contexts": [CONTEXT...]}
    restart   context                                          -> {"context": CONTEXT}
    remove    context                                          -> {}
    execute   context | language, code, envs, timeout (s, 0 = none)
              -> {"id", "line": {"type": "accepted"}} once the context is known, then zero or
                 more {"id", "line": E2B_LINE}, then the reply
    cancel    target (the id of an execute): interrupt it if it runs, drop it if it waits -> {}

Each request ends with exactly one reply line {"id", "reply": {...}} or {"id", "error": {"code",
"message"}} (codes: invalid_argument, not_found, internal). E2B_LINE is one line of E2B's /execute
stream (number_of_executions, stdout, stderr, result, error); the control plane adds
end_of_execution. At start the driver starts the default python context (and lists a javascript
one, started on first use, if the template has node), then prints {"ready": CONTEXT} (or
{"ready": null, "error": "..."}). Then it answers GET /health on port 49999 inside the sandbox
(health.py), as E2B's code interpreter does.

A context's executions run one at a time, in order. A kernel that dies (os._exit, a segfault, the
OOM killer) fails its execution with a KernelDied error and is started afresh on next use.

Modules (flat: this directory is the driver's sys.path): spawn.py starts kernels (stdlib only, run
before anything else), languages.py holds what differs between languages, context.py a context's
lifecycle and runs, jupyter_context.py and kernel_link.py the Jupyter kernels, runners.py the
contexts run by javascript.js (node) and JavaRunner.java (a JShell), execution.py a run's output
and its limits, failure.py the error a request fails with, health.py the in-sandbox /health.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spawn  # noqa: E402 - light: it starts the default kernel before the heavy imports below

if __name__ == "__main__":
    spawn.not_dumpable()  # first thing: kernel code runs as the same user
EARLY = spawn.early_default() if __name__ == "__main__" else None

import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

import health  # noqa: E402
from execution import Execution  # noqa: E402
from failure import Failure  # noqa: E402
from jupyter_context import JupyterContext  # noqa: E402
from languages import normalise  # noqa: E402
from runners import RUNNERS  # noqa: E402
from spawn import HOME  # noqa: E402


class Driver:
    def __init__(self, max_output, early):
        self.loop = asyncio.get_running_loop()
        self.max_output = max_output
        self.contexts = {}  # id -> Context, in creation order
        self.defaults = {}  # language -> the context used when a request names only a language
        self.executions = {}  # kernel msg_id -> Execution
        self.by_rid = {}  # request id -> Execution
        self.replies = {}  # kernel msg_id -> future of its shell reply
        self.run_dir, self.early = early
        self.out = sys.stdout.buffer
        sys.stdout = sys.stderr  # nothing but protocol lines may reach the control plane

    def take_early(self, ctx):
        """The kernel started before the loop (spawn.early_default), for the default python context."""
        if self.early is None or ctx.language != "python" or ctx.cwd != HOME or ctx.envs:
            return None
        early, self.early = self.early, None
        return early

    def send(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n")
        self.out.flush()

    def on_iopub(self, msg):
        execution = self.executions.get(msg.get("parent_header", {}).get("msg_id"))
        if execution is not None:
            execution.on_iopub(msg)

    def on_shell(self, msg):
        waiter = self.replies.get(msg.get("parent_header", {}).get("msg_id"))
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    # ---- contexts -------------------------------------------------------------------------------

    def context_for(self, req):
        cid, language = req.get("context"), req.get("language")
        if cid:
            if language:
                raise Failure("invalid_argument", "give a context or a language, not both")
            return self.known(cid)
        language = normalise(language)
        ctx = self.defaults.get(language)
        if ctx is None:
            ctx = self.create(language, HOME, {}, {})
            self.defaults[language] = ctx
        return ctx

    def known(self, cid):
        ctx = self.contexts.get(cid)
        if ctx is None:
            raise Failure("not_found", "context %s not found" % cid)
        return ctx

    def create(self, language, cwd, envs, variables):
        language = normalise(language)
        if not isinstance(cwd, str) or not cwd:
            cwd = HOME
        kind = RUNNERS.get(language, JupyterContext)
        ctx = kind(self, language, cwd, envs or {}, variables or {})
        self.contexts[ctx.id] = ctx
        return ctx

    # ---- requests: one method per op, routed by OPS below ----------------------------------------

    async def handle(self, req):
        rid, op = req.get("id"), req.get("op")
        try:
            handler = OPS.get(op)
            if handler is None:
                raise Failure("invalid_argument", "unknown op %r" % op)
            self.send({"id": rid, "reply": await handler(self, req)})
        except Failure as e:
            self.send({"id": rid, "error": {"code": e.code, "message": e.message}})
        except Exception as e:  # a bug or a kernel that went away mid-request: report, keep serving
            self.send({"id": rid, "error": {"code": "internal", "message": "%s: %s" % (type(e).__name__, e)}})

    async def execute(self, req):
        rid = req.get("id")
        ctx = self.context_for(req)
        self.send({"id": rid, "line": {"type": "accepted"}})
        execution = Execution(self, rid, str(req.get("code", "")), _strings(req.get("envs")),
                              float(req.get("timeout") or 0))
        self.by_rid[rid] = execution
        try:
            await ctx.execute(execution)
        finally:
            self.by_rid.pop(rid, None)
        return {}

    async def cancel(self, req):
        execution = self.by_rid.get(req.get("target"))
        if execution is not None:
            execution.cancelled = True
            for ctx in self.contexts.values():
                if ctx.current is execution:
                    ctx.interrupt()
        return {}

    async def create_context(self, req):
        ctx = self.create(req.get("language"), req.get("cwd"), _strings(req.get("envs")), req.get("variables") or {})
        try:
            await ctx.wait_started()
        except BaseException:
            self.contexts.pop(ctx.id, None)
            await ctx.stop()
            raise
        return {"context": ctx.describe()}

    async def list_contexts(self, req):
        return {"contexts": [c.describe() for c in self.contexts.values()]}

    async def restart(self, req):
        ctx = self.known(req.get("context"))
        # the kernel goes first: a run stuck in it (one that ignores interrupts) ends now
        await ctx.halt("restarted")
        async with ctx.lock:
            if self.contexts.get(ctx.id) is not ctx:
                raise Failure("not_found", "context %s was removed" % ctx.id)
            ctx.stopped_by = None
            ctx.started = None
            await ctx.wait_started()
        return {"context": ctx.describe()}

    async def remove(self, req):
        ctx = self.known(req.get("context"))
        del self.contexts[ctx.id]
        for lang, default in list(self.defaults.items()):
            if default is ctx:
                del self.defaults[lang]
        await ctx.halt("removed")
        return {}


OPS = {"execute": Driver.execute, "cancel": Driver.cancel, "create": Driver.create_context,
       "list": Driver.list_contexts, "restart": Driver.restart, "remove": Driver.remove}


def _strings(value):
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


async def main():
    max_output = int(sys.argv[sys.argv.index("--max-output") + 1]) if "--max-output" in sys.argv else 1 << 24
    driver = Driver(max_output, EARLY or spawn.early_default())
    server = None
    try:
        default = driver.context_for({"language": "python"})
        await default.ensure_started()
        await default.run_silent("pass")  # the first run pays one-time costs; not a user's
        if shutil.which("node"):  # listed from the start, as E2B's; node starts on first use
            driver.context_for({"language": "javascript"})
        driver.send({"ready": default.describe()})
        server = asyncio.ensure_future(health.serve())  # not awaited: a busy port is tried again
    except Exception as e:
        driver.send({"ready": None, "error": str(e)})
    reader = asyncio.StreamReader(limit=1 << 26)
    await driver.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError:
                continue
            task = asyncio.ensure_future(driver.handle(req))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if server is not None:
            health.stop(server)
        for ctx in list(driver.contexts.values()):
            await ctx.stop()
        shutil.rmtree(driver.run_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
