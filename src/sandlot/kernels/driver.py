"""The in-sandbox code-context driver: Jupyter kernels (and node) behind a JSON-lines pipe.

Runs inside a sandbox on the template's python3, which must have `jupyter_client` (and `ipykernel`
for python contexts, `bash_kernel` for bash ones): the control plane starts it through the agent
(`python3 -B driver.py`) and talks to it over its stdin and stdout. One driver per sandbox owns every
code context: one kernel each, started by the driver itself (so its pid is known for interrupts and
deaths) and driven over jupyter_client's protocol on ipc sockets in a private directory.
javascript and typescript contexts run kernels/javascript.js on the template's node instead.

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
{"ready": null, "error": "..."}).

A context's executions run one at a time, in order. A kernel that dies (os._exit, a segfault, the
OOM killer) fails its execution with a KernelDied error and is started afresh on next use.
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
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

from spawn import HERE, HOME, KERNELS  # noqa: E402

ALIASES = {"": "python", "py": "python", "python3": "python", "ipython": "python", "sh": "bash"}
NODE_LANGUAGES = ("javascript", "typescript")  # kernels/javascript.js on the template's node
NODE_RUNNER = os.path.join(HERE, "javascript.js")
NODE_LINE_LIMIT = 1 << 24  # javascript.js cuts its lines well below this; what it buffers is twice as much
MIME = {
    "text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
    "image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex",
    "application/json": "json", "application/javascript": "javascript", "e2b/data": "data",
    "e2b/chart": "chart",
}
KERNEL_START_TIMEOUT = 60.0
# An error is sent even past the output limit (it says why the run failed), cut to this if need be;
# one per run at most, so the control plane never sees a line much over its limit.
ERROR_FLOOR = 1 << 16
CUT = "\n[sandlot: %d characters cut: a run's output is limited to %d bytes]\n"
# Per-run environment variables: set before the run, restored after it (state is per context).
# The earlier values are kept outside the user's namespace (on the os module, under a symbol), and
# the restore walks the run's own keys: a run that clears its namespace (%reset -f, delete
# globalThis...) loses at worst the earlier values, never leaves its own behind.
ENV_CODE = {
    "python": (
        "import os as _sl_os\n_sl_os._sandlot_saved_env = {k: _sl_os.environ.get(k) for k in %(keys)s}\n"
        "_sl_os.environ.update(%(envs)s)\ndel _sl_os\n",
        "import os as _sl_os\n_sl_saved = _sl_os.__dict__.pop('_sandlot_saved_env', None) or {}\n"
        "for _sl_k in %(keys)s:\n"
        "    _sl_v = _sl_saved.get(_sl_k)\n"
        "    _sl_os.environ.pop(_sl_k, None) if _sl_v is None else _sl_os.environ.__setitem__(_sl_k, _sl_v)\n"
        "del _sl_os, _sl_saved, _sl_k, _sl_v\n"),
    "bash": ("_sl_saved_env=$(declare -p %(names)s 2>/dev/null); export %(assign)s\n",
             "unset %(names)s; eval \"$_sl_saved_env\"; unset _sl_saved_env\n"),
    "javascript": (
        "globalThis[Symbol.for('sandlot.savedEnv')] = Object.fromEntries(%(keys_json)s.map((k) => [k, process.env[k]]));\n"
        "Object.assign(process.env, %(envs_json)s);\n",
        "{ const saved = globalThis[Symbol.for('sandlot.savedEnv')] || {};\n"
        "  for (const k of %(keys_json)s) { const v = saved[k];\n"
        "    if (v === undefined) delete process.env[k]; else process.env[k] = v; }\n"
        "  delete globalThis[Symbol.for('sandlot.savedEnv')]; }\n"),
}
ENV_CODE["typescript"] = ENV_CODE["javascript"]


class Failure(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def shell_quote(value):
    return "'" + str(value).replace("'", "'\\''") + "'"


class KernelLink:
    """The shell and iopub sockets of one kernel, read straight from the event loop (one callback
    per readable socket, no future per message), signed and parsed by jupyter_client's Session."""

    def __init__(self, info, on_shell, on_iopub):
        import zmq
        from jupyter_client.session import Session

        self.zmq = zmq
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"],
                               username="sandlot")
        context = zmq.Context.instance()
        self.shell = context.socket(zmq.DEALER)
        self.iopub = context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        for sock, port in ((self.shell, info["shell_port"]), (self.iopub, info["iopub_port"])):
            sock.linger = 0
            sock.connect("ipc://%s-%d" % (info["ip"], port))
        self.handlers = ((self.shell, on_shell), (self.iopub, on_iopub))
        self.loop = asyncio.get_running_loop()
        for sock, handle in self.handlers:
            self.loop.add_reader(sock.FD, self.drain)

    def drain(self):
        # zmq's FD is edge-triggered: read until neither socket has anything left
        progress = True
        while progress:
            progress = False
            for sock, handle in self.handlers:
                if sock.closed or not sock.EVENTS & self.zmq.POLLIN:
                    continue
                try:
                    frames = sock.recv_multipart(self.zmq.NOBLOCK)
                except self.zmq.Again:
                    continue
                progress = True
                try:
                    _, frames = self.session.feed_identities(frames)
                    msg = self.session.deserialize(frames)
                except Exception:  # unsigned or malformed: not from our kernel
                    continue
                handle(msg)

    def send(self, msg_type, content):
        msg = self.session.msg(msg_type, content)
        self.session.send(self.shell, msg)
        self.loop.call_soon(self.drain)  # a send can swallow the FD's edge for a pending reply
        return msg["header"]["msg_id"]

    def execute(self, code, silent):
        return self.send("execute_request", {"code": code, "silent": silent, "store_history": not silent,
                                             "user_expressions": {}, "allow_stdin": False,
                                             "stop_on_error": False})

    def close(self):
        for sock, _ in self.handlers:
            if not sock.closed:
                self.loop.remove_reader(sock.FD)
                sock.close(linger=0)


class Child:
    """A kernel process (subprocess.Popen) that the event loop can wait for."""

    def __init__(self, popen):
        self.popen, self.pid = popen, popen.pid

    @property
    def returncode(self):
        return self.popen.poll()

    async def wait(self):
        if self.popen.poll() is None:  # not reaped: its pid cannot be reused while we watch it
            loop = asyncio.get_running_loop()
            fd = os.pidfd_open(self.pid)
            exited = loop.create_future()
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        return self.popen.wait()


class Context:
    def __init__(self, driver, language, cwd, envs, variables):
        self.driver = driver
        self.id = secrets.token_hex(16)
        self.language, self.cwd, self.envs, self.variables = language, cwd, envs, variables
        self.lock = asyncio.Lock()
        self.proc = self.client = None
        self.started = None  # a future: the kernel is up (or failed to come up)
        self.iopub_seen = None  # while starting: set by the kernel's next iopub message
        self.files = []  # the kernel's connection file and ipc sockets
        self.current = None  # the Execution running now
        self.count = 0  # the kernel's execution count after its last run (a new kernel starts at 0)
        self.stopped_by = None  # "restarted" / "removed" while a restart or remove stops the kernel

    def describe(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    # ---- kernel lifecycle ----------------------------------------------------------------------

    def ensure_started(self):
        started = self.started
        if started is None or (started.done() and (started.cancelled() or started.exception() or self.dead())):
            self.started = asyncio.ensure_future(self._start())
        return self.started

    async def wait_started(self):
        """The kernel up. A start that a restart or remove cancelled fails this request (with a
        reply), not the driver's task for it."""
        started = self.ensure_started()
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            if started.cancelled():
                raise Failure("internal", "the context was %s while its kernel started" % (self.stopped_by or "stopped"))
            raise

    async def halt(self, why):
        """Stop the kernel for a restart or remove. A start in progress is cancelled first: it
        would otherwise spawn a kernel after stop() and leave it running."""
        self.stopped_by = why
        started = self.started
        if started is not None and not started.done():
            started.cancel()
            await asyncio.wait((started,))
        await self.stop()

    def dead(self):
        return self.proc is None or self.proc.returncode is not None

    async def _start(self):
        await self.stop()
        started = self.driver.take_early(self)
        if started is None:
            try:
                started = spawn.spawn_kernel(self.driver.run_dir, secrets.token_hex(16), self.language, self.cwd,
                                             self.envs)
            except OSError as e:
                raise Failure("invalid_argument", "cannot start the %s kernel in %s: %s" % (self.language, self.cwd, e))
        popen, info, conn = started
        self.proc = Child(popen)
        self.count = 0
        self.files = [conn, *("%s-%d" % (info["ip"], port) for port in range(1, 6))]
        # imported once the kernel is on its way: the imports overlap its start
        self.client = KernelLink(info, self.driver.on_shell, self._on_iopub)
        ready = asyncio.ensure_future(self._wait_ready())
        died = asyncio.ensure_future(self.proc.wait())
        try:
            await asyncio.wait((ready, died), timeout=KERNEL_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            died.cancel()
        if not ready.done() or ready.cancelled():
            if died.done() and not died.cancelled():
                raise Failure("internal", "the %s kernel exited while starting (status %s)" % (
                    self.language, self.proc.returncode))
            raise Failure("internal", "the %s kernel did not start in %d s" % (self.language, KERNEL_START_TIMEOUT))
        setup = []
        if self.variables:
            setup.append(self._variables_code())
        if setup:
            await self.run_silent("\n".join(setup))

    async def _wait_ready(self):
        """Ask for kernel_info until it answers and its iopub messages reach us (a SUB socket
        misses what is published before it is connected)."""
        while True:
            self.iopub_seen = self.driver.loop.create_future()
            try:
                await asyncio.wait_for(self._expect_reply(self.client.send("kernel_info_request", {})), 0.5)
                await asyncio.wait_for(self.iopub_seen, 0.25)
                return
            except asyncio.TimeoutError:
                continue

    def _on_iopub(self, msg):
        if self.iopub_seen is not None and not self.iopub_seen.done():
            self.iopub_seen.set_result(None)
        self.driver.on_iopub(msg)

    def _variables_code(self):
        if self.language in NODE_LANGUAGES:
            return "Object.assign(globalThis, JSON.parse(%s));" % json.dumps(json.dumps(self.variables))
        if self.language == "python":
            return "import json as _sl_j\nglobals().update(_sl_j.loads(%r))\ndel _sl_j\n" % json.dumps(self.variables)
        return "\n".join("%s=%s" % (k, shell_quote(v if isinstance(v, str) else json.dumps(v)))
                         for k, v in self.variables.items())

    async def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        self.proc = None
        files, self.files = self.files, []
        for path in files:  # a killed kernel leaves its ipc sockets behind
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def interrupt(self, sig=signal.SIGINT):
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    # ---- running code --------------------------------------------------------------------------

    async def run_silent(self, code):
        """Run setup code without output or a history entry; raise if it fails or the kernel dies
        meanwhile (a run may have left it to die there: os.environ patched to exit)."""
        proc = self.proc
        reply = self._expect_reply(self.client.execute(code, silent=True))
        try:
            replied = await self._unless_died(proc, reply)
        finally:
            reply.cancel()
        if not replied:
            raise Failure("internal", "setting up the context failed: %s" % kernel_died(
                proc.returncode, self.stopped_by)["value"])
        if reply.result()["content"].get("status") != "ok":
            raise Failure("internal", "setting up the context failed: %s" % reply.result()["content"].get("evalue"))

    @staticmethod
    async def _unless_died(proc, *futures):
        """Wait for all of `futures`; False if the kernel process ends first."""
        died = asyncio.ensure_future(proc.wait())
        waiting = set(futures)
        try:
            while waiting and not died.done():
                done, _ = await asyncio.wait(waiting | {died}, return_when=asyncio.FIRST_COMPLETED)
                waiting -= done
        finally:
            died.cancel()
        return not waiting

    def _expect_reply(self, msg_id):
        """A future of the shell reply to msg_id, registered before the loop can read it."""
        waiter = self.driver.loop.create_future()
        self.driver.replies[msg_id] = waiter
        waiter.add_done_callback(lambda _: self.driver.replies.pop(msg_id, None))
        return waiter

    async def execute(self, execution):
        async with self.lock:
            if execution.cancelled:
                return
            if self.driver.contexts.get(self.id) is not self:
                raise Failure("not_found", "context %s was removed" % self.id)
            await self.wait_started()
            envs = execution.envs if self.language in ENV_CODE else None
            if envs:
                await self.run_silent(self._env_code(envs, 0))
            try:
                # only the run itself is `current`, the one a cancel interrupts: an interrupt
                # landing in the env set-up or restore would leave the run's env vars in place
                if not execution.cancelled:
                    self.current = execution
                    try:
                        await self.run_execution(execution)
                    finally:
                        self.current = None
            finally:
                if envs and not self.dead():
                    await self.run_silent(self._env_code(envs, 1))

    async def run_execution(self, execution):
        proc = self.proc  # stop() (a restart, a remove) clears self.proc while we wait
        execution.msg_id = self.client.execute(execution.code, silent=False)
        self.driver.executions[execution.msg_id] = execution
        # Python kernels send no execute_input (startup.py): the count is known ahead, the next one
        execution.announce(self.count + 1)
        reply = self._expect_reply(execution.msg_id)
        execution.idle = idle = self.driver.loop.create_future()
        deadline = self.driver.loop.call_later(execution.timeout, self.interrupt) if execution.timeout else None
        try:
            if not await self._unless_died(proc, reply, idle):
                execution.emit(kernel_died(proc.returncode, self.stopped_by))
                return
            content = reply.result()["content"]
            count = content.get("execution_count")
            if isinstance(count, int) and not isinstance(count, bool):
                execution.announce(count)  # differs only if the code changed the kernel's count
                self.count = count
            if content.get("status") == "error" and not execution.error_seen:
                execution.emit({"type": "error", "name": content.get("ename", ""),
                                "value": content.get("evalue", ""),
                                "traceback": "\n".join(content.get("traceback", []))})
        finally:
            if deadline is not None:
                deadline.cancel()
            reply.cancel()
            self.driver.executions.pop(execution.msg_id, None)

    def _env_code(self, envs, which):
        template = ENV_CODE[self.language][which]
        names = " ".join(envs)
        return template % {"keys": repr(list(envs)), "envs": repr(dict(envs)), "names": names,
                           "keys_json": json.dumps(list(envs)), "envs_json": json.dumps(dict(envs)),
                           "assign": " ".join("%s=%s" % (k, shell_quote(v)) for k, v in envs.items())}


class NodeContext(Context):
    """A javascript or typescript context: kernels/javascript.js on the template's node, JSON lines
    on its stdin and stdout (no Jupyter kernel for node installs without a network)."""

    async def _start(self):
        await self.stop()
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise Failure("invalid_argument", "%s contexts need Node.js, which this sandbox's template "
                          "does not have" % self.language)
        env = dict(os.environ, **self.envs)
        self.calls = {}  # run id -> queue of its lines
        self.ids = iter(range(1, 1 << 62))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                node, NODE_RUNNER, cwd=self.cwd, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, start_new_session=True, limit=NODE_LINE_LIMIT)
        except OSError as e:
            raise Failure("invalid_argument", "cannot start node in %s: %s" % (self.cwd, e))
        spawn.raise_oom_score(self.proc.pid)
        ready = self.driver.loop.create_future()
        self.reader = asyncio.ensure_future(self._read(ready))
        try:
            await asyncio.wait_for(ready, KERNEL_START_TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure("internal", "node did not start in %d s" % KERNEL_START_TIMEOUT)
        if not ready.result():
            raise Failure("internal", "node exited while starting (status %s)" % self.proc.returncode)
        if self.variables:
            await self.run_silent(self._variables_code())

    async def _read(self, ready):
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "ready" in msg and not ready.done():
                    ready.set_result(True)
                queue = self.calls.get(msg.get("id"))
                if queue is not None:
                    queue.put_nowait(msg)
        except (ValueError, OSError):  # a line over the limit, a broken pipe: the runner is unusable
            pass
        finally:  # node is gone (or being stopped): nobody waits for it any more
            if not ready.done():
                ready.set_result(False)
            self.interrupt(signal.SIGKILL)
            for queue in self.calls.values():
                queue.put_nowait(None)

    async def _call(self, code, silent, execution=None, typescript=None):
        """Run code; return the runner's done line, or None if node died meanwhile."""
        rid = next(self.ids)
        queue = self.calls[rid] = asyncio.Queue()
        if typescript is None:
            typescript = self.language == "typescript"
        try:
            self.proc.stdin.write(json.dumps({"id": rid, "code": code, "silent": silent,
                                              "typescript": typescript}).encode() + b"\n")
            while True:
                msg = await queue.get()
                if msg is None or msg.get("type") == "done":
                    return msg
                if execution is not None:
                    msg.pop("id", None)
                    if msg.get("type") == "result":
                        msg = result_line({"text/plain": msg.get("text", "")}, True)
                    execution.emit(msg)
        finally:
            del self.calls[rid]

    async def run_silent(self, code):
        done = await self._call(code, True, typescript=False)
        if done is None or done.get("error"):
            raise Failure("internal", "setting up the context failed: %s" % (done or {}).get("error", "node died"))

    async def run_execution(self, execution):
        proc = self.proc  # stop() (a restart, a remove) clears self.proc while we wait
        deadline = self.driver.loop.call_later(execution.timeout, self.interrupt) if execution.timeout else None
        try:
            if await self._call(execution.code, False, execution) is None:
                await proc.wait()
                execution.emit(kernel_died(proc.returncode, self.stopped_by))
        finally:
            if deadline is not None:
                deadline.cancel()

    async def stop(self):
        if getattr(self, "reader", None) is not None:
            self.reader.cancel()
            self.reader = None
        if self.proc is not None and self.proc.returncode is None:
            self.interrupt(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None


class Execution:
    def __init__(self, driver, rid, code, envs, timeout):
        self.driver, self.rid, self.code, self.envs, self.timeout = driver, rid, code, envs, timeout
        self.cancelled = False
        self.msg_id = None
        self.events = asyncio.Queue()
        self.sent = 0
        self.truncated = False
        self.error_seen = False
        self.floor_used = False
        self.count = None  # the execution count sent for this run

    def announce(self, count):
        if count != self.count:
            self.count = count
            self.emit({"type": "number_of_executions", "execution_count": count})

    def emit(self, line):
        if line["type"] == "error":
            line = self.bounded_error(line)
            if line is None:
                return
        elif line["type"] in ("stdout", "stderr", "result"):
            if self.truncated:
                return
            size = len(json.dumps(line))
            room = self.driver.max_output - self.sent
            if size > room:
                self.truncated = True
                if line["type"] != "result" and room > 0:  # text keeps what fits; a result is whole or not at all
                    text, keep = line["text"], room
                    while keep and len(json.dumps(text[:keep])) > room:  # escapes take up to 6 bytes a char
                        keep //= 2
                    self.driver.send({"id": self.rid, "line": dict(line, text=text[:keep])})
                self.driver.send({"id": self.rid, "line": {
                    "type": "stderr", "timestamp": _now(),
                    "text": "\n[sandlot: output truncated: this run produced more than %d bytes]\n"
                            % self.driver.max_output}})
                return
            self.sent += size
        self.driver.send({"id": self.rid, "line": line})

    def bounded_error(self, line):
        """The error line cut to the room left (ERROR_FLOOR for the first past the limit), or None
        if there is none: a 20 MiB exception message would otherwise make a 40 MiB line."""
        limit = self.driver.max_output
        room, size = limit - self.sent, len(json.dumps(line))
        if size > room and not self.floor_used:
            room, self.floor_used = max(room, min(ERROR_FLOOR, limit)), True
        if size > room:
            name = str(line.get("name", ""))[:200]
            fixed = len(json.dumps(dict(line, name=name, value="", traceback="")))
            budget = room - fixed
            if budget < 2 * len(CUT):
                return None
            value, traceback = str(line.get("value", "")), str(line.get("traceback", ""))
            # the value gets what the traceback leaves, at least half; the traceback the rest
            value = _cut(value, max(budget // 2, budget + 2 - len(json.dumps(traceback))), limit)
            traceback = _cut(traceback, budget + 2 - len(json.dumps(value)), limit, ends=True)
            line = dict(line, name=name, value=value, traceback=traceback)
            size = len(json.dumps(line))
        self.sent += size
        return line

    def on_iopub(self, msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "execute_input":  # bash_kernel's (python kernels send none)
            self.announce(content.get("execution_count"))
        elif kind == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            self.emit({"type": name, "text": content.get("text", ""), "timestamp": _stamp(msg)})
        elif kind in ("execute_result", "display_data"):
            self.emit(result_line(content.get("data") or {}, kind == "execute_result"))
        elif kind == "error":
            self.error_seen = True
            self.emit({"type": "error", "name": content.get("ename", ""), "value": content.get("evalue", ""),
                       "traceback": "\n".join(content.get("traceback", []))})
        elif kind == "status" and content.get("execution_state") == "idle" and not self.idle.done():
            self.idle.set_result(None)


def _cut(text, budget, limit, ends=False):
    """`text`, cut with a marker so that its JSON string takes at most `budget` bytes; with `ends`,
    its head and tail are kept (a traceback's last lines say what was raised)."""
    size = len(json.dumps(text))
    if size <= budget:
        return text
    keep = max(budget - len(CUT) - 16, 0)
    while True:
        head = keep - keep // 2 if ends else keep
        tail = text[len(text) - keep // 2:] if ends and keep // 2 else ""
        cut = text[:head] + CUT % (len(text) - head - len(tail), limit) + tail
        size = len(json.dumps(cut))
        if size <= budget or not keep:
            return cut if size <= budget else ""
        keep = min(keep - 1, keep * budget // size)  # escapes take up to 6 bytes a character


def kernel_died(returncode, stopped_by=None):
    if stopped_by:  # not a death: the context was restarted or removed under the run
        return {"type": "error", "name": "ContextStopped", "value": "the context was %s during this run" % stopped_by,
                "traceback": ""}
    how = ("killed by signal %d%s" % (-returncode, " (out of memory?)" if returncode == -signal.SIGKILL else "")
           if returncode is not None and returncode < 0 else "exit status %s" % returncode)
    return {"type": "error", "name": "KernelDied",
            "value": "the kernel died (%s): the context restarts on its next run" % how, "traceback": ""}


def result_line(bundle, main):
    line = {"type": "result", "is_main_result": main}
    extra = {}
    for mime, value in bundle.items():
        key = MIME.get(mime)
        if key is None:
            extra[mime] = value
        else:
            line[key] = value
    text = line.get("text")
    if isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] == "'":
        line["text"] = text[1:-1]
    line["extra"] = extra
    return line


def _stamp(msg):
    date = msg.get("header", {}).get("date")
    return date.isoformat() if hasattr(date, "isoformat") else (date or _now())


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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

    # ---- requests -------------------------------------------------------------------------------

    def context_for(self, req):
        cid, language = req.get("context"), req.get("language")
        if cid:
            if language:
                raise Failure("invalid_argument", "give a context or a language, not both")
            ctx = self.contexts.get(cid)
            if ctx is None:
                raise Failure("not_found", "context %s not found" % cid)
            return ctx
        language = normalise(language)
        ctx = self.defaults.get(language)
        if ctx is None:
            ctx = self.create(language, HOME, {}, {})
            self.defaults[language] = ctx
        return ctx

    def create(self, language, cwd, envs, variables):
        language = normalise(language)
        if not isinstance(cwd, str) or not cwd:
            cwd = HOME
        kind = NodeContext if language in NODE_LANGUAGES else Context
        ctx = kind(self, language, cwd, envs or {}, variables or {})
        self.contexts[ctx.id] = ctx
        return ctx

    async def handle(self, req):
        rid, op = req.get("id"), req.get("op")
        try:
            reply = await self._dispatch(op, req, rid)
            self.send({"id": rid, "reply": reply})
        except Failure as e:
            self.send({"id": rid, "error": {"code": e.code, "message": e.message}})
        except Exception as e:  # a bug or a kernel that went away mid-request: report, keep serving
            self.send({"id": rid, "error": {"code": "internal", "message": "%s: %s" % (type(e).__name__, e)}})

    async def _dispatch(self, op, req, rid):
        if op == "execute":
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
        if op == "cancel":
            execution = self.by_rid.get(req.get("target"))
            if execution is not None:
                execution.cancelled = True
                for ctx in self.contexts.values():
                    if ctx.current is execution:
                        ctx.interrupt()
            return {}
        if op == "create":
            ctx = self.create(req.get("language"), req.get("cwd"), _strings(req.get("envs")),
                              req.get("variables") or {})
            try:
                await ctx.wait_started()
            except BaseException:
                self.contexts.pop(ctx.id, None)
                await ctx.stop()
                raise
            return {"context": ctx.describe()}
        if op == "list":
            return {"contexts": [c.describe() for c in self.contexts.values()]}
        ctx = self.contexts.get(req.get("context"))
        if ctx is None:
            raise Failure("not_found", "context %s not found" % req.get("context"))
        if op == "restart":
            # the kernel goes first: a run stuck in it (one that ignores interrupts) ends now
            await ctx.halt("restarted")
            async with ctx.lock:
                if self.contexts.get(ctx.id) is not ctx:
                    raise Failure("not_found", "context %s was removed" % ctx.id)
                ctx.stopped_by = None
                ctx.started = None
                await ctx.wait_started()
            return {"context": ctx.describe()}
        if op == "remove":
            del self.contexts[ctx.id]
            for lang, default in list(self.defaults.items()):
                if default is ctx:
                    del self.defaults[lang]
            await ctx.halt("removed")
            return {}
        raise Failure("invalid_argument", "unknown op %r" % op)


def normalise(language):
    language = ALIASES.get((language or "").strip().lower(), (language or "").strip().lower())
    language = {"js": "javascript", "ts": "typescript"}.get(language, language)
    if language not in KERNELS and language not in NODE_LANGUAGES:
        raise Failure("invalid_argument", "unsupported language %r: known languages are %s"
                      % (language, ", ".join(sorted([*KERNELS, *NODE_LANGUAGES]))))
    return language


def _strings(value):
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


async def main():
    max_output = int(sys.argv[sys.argv.index("--max-output") + 1]) if "--max-output" in sys.argv else 1 << 24
    driver = Driver(max_output, EARLY or spawn.early_default())
    try:
        default = driver.context_for({"language": "python"})
        await default.ensure_started()
        await default.run_silent("pass")  # the first run pays one-time costs; not a user's
        if shutil.which("node"):  # listed from the start, as E2B's; node starts on first use
            driver.context_for({"language": "javascript"})
        driver.send({"ready": default.describe()})
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
        for ctx in list(driver.contexts.values()):
            await ctx.stop()
        shutil.rmtree(driver.run_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
