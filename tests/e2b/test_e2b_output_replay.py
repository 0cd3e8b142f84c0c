"""sandlot's output replay through the official SDK: connecting to a running background command
returns what it printed before the connect (issue 12; the agent keeps its latest output)."""

from __future__ import annotations

import time

from support import kill_quietly


def test_connect_replays_what_a_background_command_printed(make_sandbox):
    sbx = make_sandbox()
    try:
        handle = sbx.commands.run("for i in 1 2 3; do echo tick $i; done; sleep 30", background=True)
        time.sleep(0.5)
        again = sbx.commands.connect(handle.pid)
        seen = []
        deadline = time.monotonic() + 10
        for stdout, _, _ in again:
            if stdout:
                seen.append(stdout)
            if "".join(seen).count("\n") >= 3 or time.monotonic() > deadline:
                break
        assert "".join(seen) == "tick 1\ntick 2\ntick 3\n"
        again.kill()
    finally:
        kill_quietly(sbx)
