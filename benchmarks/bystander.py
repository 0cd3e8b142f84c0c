"""A running sandbox's commands while something else loads the machine (scale.py's bursts): a
process of its own, as another user's client would be, running `true` in a loop through the
official SDK. It prints "ready" once its loop runs; a line "stop" on stdin ends the loop, and it
prints each round trip as [when it began (time.time()), seconds], one JSON list.

    python benchmarks/bystander.py SANDBOX_ID     # E2B_* variables from the server under test
"""

from __future__ import annotations

import json
import sys
import threading
import time

from e2b import Sandbox


def main() -> None:
    sbx = Sandbox.connect(sys.argv[1])
    stopped = threading.Event()

    def wait_for_stop() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stopped.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    trips = []
    sbx.commands.run("true")
    print("ready", flush=True)
    while not stopped.is_set():
        began, t = time.time(), time.perf_counter()
        sbx.commands.run("true")
        trips.append([began, time.perf_counter() - t])
    print(json.dumps(trips), flush=True)


if __name__ == "__main__":
    main()
