"""One run's output on its way to the control plane: E2B's /execute lines, bounded to the driver's
output limit (an error is sent even past it, cut to fit), and the translation of Jupyter's
messages and MIME bundles into those lines."""

import json
import signal
import time

MIME = {
    "text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
    "image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex",
    "application/json": "json", "application/javascript": "javascript", "e2b/data": "data",
    "e2b/chart": "chart",
}
# An error is sent even past the output limit (it says why the run failed), cut to this if need be;
# one per run at most, so the control plane never sees a line much over its limit.
ERROR_FLOOR = 1 << 16
CUT = "\n[sandlot: %d characters cut: a run's output is limited to %d bytes]\n"


class Execution:
    def __init__(self, driver, rid, code, envs, timeout):
        self.driver, self.rid, self.code, self.envs, self.timeout = driver, rid, code, envs, timeout
        self.cancelled = False
        self.msg_id = None
        self.sent = 0
        self.truncated = False
        self.error_seen = False
        self.floor_used = False
        self.count = None  # the execution count sent for this run
        self.idle = None  # a Jupyter run: a future set by the kernel's idle status

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
