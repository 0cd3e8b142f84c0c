"""A code-interpreter driver taken over by the sandbox itself: its root puts a program of its own
where the driver's `python3` is and kills the driver; the control plane starts that program in its
place, on the driver's pipes (what interp_support plays from the host, done from inside). Whatever
it writes or leaves unread, the server's cost stays bounded and its answers are clear (a 5xx of the
interpreter, never a 500 of the server's own or a traceback)."""

from __future__ import annotations

import json
import os
import time

import httpx
from interp_support import jupyter_headers, ok
from support import access_token, wait_until

# The stand-in: behaves as /tmp/fake-driver.json says (its pid in /tmp/fake-driver.pid).
FAKE_DRIVER = r'''
import json, os, sys, time
mode = json.load(open("/tmp/fake-driver.json"))
with open("/tmp/fake-driver.pid", "w") as f:
    f.write(str(os.getpid()))
out = sys.stdout.buffer
if mode.get("line_bytes"):  # one line without its end
    left, chunk = mode["line_bytes"], b"x" * 65536
    while left > 0:
        left -= os.write(1, chunk[:left])
    time.sleep(3600)
out.write(json.dumps({"ready": {"id": "fake", "language": "python", "cwd": "/home/user"}}).encode() + b"\n")
out.flush()
for _ in range(mode.get("deep_lines", 0)):  # lines nested past what a JSON parser takes
    out.write(b"[" * 5000 + b"]" * 5000 + b"\n")
out.flush()
if not mode.get("read", True):
    time.sleep(3600)
for line in sys.stdin.buffer:
    request = json.loads(line)
    answer = mode.get("answers", {}).get(request.get("op"))
    if answer is not None:
        out.write(json.dumps({"id": request["id"], **answer}).encode() + b"\n")
        out.flush()
'''
WRAPPER = """#!/bin/sh
case "$*" in
  *kernels/driver.py*) exec /usr/bin/python3.real /tmp/fake-driver.py ;;
esac
exec /usr/bin/python3.real "$@"
"""
BODY_BYTES = 3 << 20  # a request under the server's 4 MiB JSON limit


def take_over(sbx, mode: dict) -> None:
    """Replace the sandbox's driver with the stand-in, as the sandbox's root."""
    ok(sbx.run_code("1"))  # the real driver runs
    sbx.files.write("/tmp/fake-driver.json", json.dumps(mode), user="root")
    sbx.files.write("/tmp/fake-driver.py", FAKE_DRIVER, user="root")
    sbx.files.write("/tmp/python3-wrapper", WRAPPER, user="root")
    sbx.commands.run("set -e; cp -a \"$(readlink -f /usr/bin/python3)\" /usr/bin/python3.real; "
                     "install -m 755 /tmp/python3-wrapper /usr/bin/python3; "
                     "pkill -9 -f 'kernels/driver[.]py' || true", user="root")


def _headers(server, sbx) -> dict[str, str]:
    return jupyter_headers(sbx.sandbox_id, access_token(server, sbx.sandbox_id))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _stand_in_pid(sbx) -> int:
    """The pid of the stand-in running now (it writes it when it starts)."""
    wait_until(lambda: sbx.files.exists("/tmp/fake-driver.pid"), timeout=30, message="the stand-in to start")
    return int(sbx.files.read("/tmp/fake-driver.pid", user="root"))


def _given_up(server, headers: dict[str, str], times: int) -> None:
    """`times` runs of a 3 MiB cell, each given up after half a second."""
    body = json.dumps({"code": "#" + "x" * BODY_BYTES})
    for _ in range(times):
        try:
            httpx.post(f"{server.url}/execute", content=body, headers={**headers, "Content-Type": "application/json"},
                       timeout=httpx.Timeout(30, read=0.5))
        except httpx.TimeoutException:
            pass


def test_a_line_without_end_costs_the_server_little(server, make_sandbox):
    """A stand-in writes one line past the bound (the output limit, 16 MiB, and a margin) and no
    newline: the server reads it once and stops it. It split its whole buffer on every read, ~1 s
    of the event loop's CPU per start, which any request of the sandbox's starts again."""
    sbx = make_sandbox()
    take_over(sbx, {"line_bytes": 18 << 20})
    headers = _headers(server, sbx)
    used = _cpu_seconds(server.proc.pid)
    for _ in range(3):
        r = httpx.get(f"{server.url}/contexts", headers=headers, timeout=60)
        assert r.status_code == 500 and "stopped" in r.text, (r.status_code, r.text)
    used = _cpu_seconds(server.proc.pid) - used
    assert used < 1.0, f"three starts of the stand-in cost the server {used:.2f} s of CPU"


def test_requests_left_unread_stop_the_driver(server, make_sandbox):
    """A stand-in that never reads its stdin: the requests sent to it (runs given up by their
    client included) were held in the server without bound. Past 64 MiB it is stopped."""
    sbx = make_sandbox()
    take_over(sbx, {"read": False})
    headers = _headers(server, sbx)
    _given_up(server, headers, 1)
    first = _stand_in_pid(sbx)
    _given_up(server, headers, 30)  # 90 MiB
    gone = f"kill -0 {first} 2>/dev/null || echo gone"
    wait_until(lambda: "gone" in sbx.commands.run(gone, user="root").stdout, timeout=30,
               message="the stand-in that reads nothing to be stopped")


def test_requests_given_up_are_not_held(server, make_sandbox):
    """A stand-in that reads every request and answers none: a run whose client left was held,
    its 3 MiB body included, until the driver answered (never). Now it ends with its client."""
    sbx = make_sandbox()
    take_over(sbx, {"read": True})
    headers = _headers(server, sbx)
    _given_up(server, headers, 2)
    before = _rss(server.proc.pid)
    _given_up(server, headers, 30)
    grown = _rss(server.proc.pid) - before
    assert grown < 48 << 20, f"30 runs given up grew the server by {grown >> 20} MiB"


def test_lines_nested_too_deeply_count_as_garbage(server, make_sandbox):
    """A line nested past what json parses (a RecursionError, not a ValueError) escaped the
    reader's count of lines that answer nothing, with a traceback in the server's log each: a
    stand-in could write them for ever. They count, and past the budget the driver is stopped."""
    sbx = make_sandbox()
    take_over(sbx, {"deep_lines": 100})  # 1 MB of them, past the 64 KiB budget
    first = _stand_in_pid(sbx)  # started again by the server itself, a second after the driver's end
    gone = f"kill -0 {first} 2>/dev/null || echo gone"
    wait_until(lambda: "gone" in sbx.commands.run(gone, user="root").stdout, timeout=30,
               message="the stand-in writing deep lines to be stopped")


def test_forged_text_is_relayed_as_text(server, make_sandbox):
    """Lone surrogates in a stand-in's answers (JSON "\\udcff"; a path that is not UTF-8 comes as
    one) were a 500 and a traceback: they come as U+FFFD. An answer nested past what the server
    renders is a broken protocol (502)."""
    deep: object = {}
    for _ in range(960):
        deep = {"a": deep}
    sbx = make_sandbox()
    take_over(sbx, {"answers": {
        "list": {"reply": {"contexts": [{"id": "c\udcff", "language": "python", "cwd": "/tmp/\udcff"}]}},
        "create": {"error": {"code": "invalid_argument", "message": "no \udcff here"}},
        "restart": {"reply": {"context": deep}},
    }})
    headers = _headers(server, sbx)
    listed = httpx.get(f"{server.url}/contexts", headers=headers, timeout=60)
    assert listed.status_code == 200 and listed.json()[0]["cwd"] == "/tmp/\ufffd", (listed.status_code, listed.text)
    made = httpx.post(f"{server.url}/contexts", json={}, headers=headers, timeout=60)
    assert (made.status_code, made.text) == (400, "no \ufffd here")
    restarted = httpx.post(f"{server.url}/contexts/c/restart", headers=headers, timeout=60)
    assert restarted.status_code == 502, (restarted.status_code, restarted.text[:300])
