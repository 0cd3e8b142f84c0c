"""Cleanup: after kill() nothing of a sandbox is left on the host, whatever it did to resist (every
test's sandboxes are checked after their kill too, by make_sandbox)."""

from __future__ import annotations

import time
from pathlib import Path

from host_resources import pid_namespace_members, sandbox_traces
from runtime_support import enforces

# background processes of every kind, directories without permissions, a tree too deep for a
# recursive walk, names that are hard to quote, a fifo, a file in use
HOSTILE = """
set -e
nohup sleep 600 >/dev/null 2>&1 &
setsid sleep 600 >/dev/null 2>&1 < /dev/null &
( ( exec -a orphan sleep 600 ) >/dev/null 2>&1 & ) &
cd ~
mkdir -p locked/deep && touch locked/deep/f && chmod 000 locked/deep && chmod 500 locked
python3 -c "
import os
os.makedirs('tree', exist_ok=True)
os.chdir('tree')
for _ in range(3000):
    os.mkdir('d')
    os.chdir('d')
"
touch -- "-rf" "$(printf 'new\\nline')" "space name" "*"
mkfifo pipe
exec 3> held
echo ready
"""


async def test_kill_leaves_nothing_of_a_hostile_sandbox(runtime, make_sandbox):
    box = make_sandbox()
    result = await box.run(HOSTILE)
    assert (result.exit_code, result.stdout) == (0, b"ready\n"), result
    assert len(pid_namespace_members(box.pid_ns)) >= 4  # the agent (pid 1), three sleeps
    runtime.kill(box.id)
    assert not runtime.alive(box.rt)
    assert sandbox_traces(box.id, runtime.home, box.pid_ns) == {}
    assert box.id not in runtime.leftovers()


async def test_leftovers_are_the_live_sandboxes(runtime, make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    assert {a.id, b.id} <= runtime.leftovers()
    runtime.kill(a.id)
    assert a.id not in runtime.leftovers() and b.id in runtime.leftovers()


async def test_a_killed_sandboxs_loop_device_is_removed_not_kept(runtime, make_sandbox):
    # kept, the host would hold as many loop devices as sandboxes were ever alive at once, and every
    # sysinfo(2) on it (bash calls it at each start) walks them all
    if not enforces(runtime, "disk_quota"):  # no disk of its own (rootless)
        return
    box = make_sandbox()
    mine = [p.parent.parent.name for p in Path("/sys/block").glob("loop*/loop/backing_file")
            if box.id in p.read_text().split("/")]
    assert len(mine) == 1, mine
    runtime.kill(box.id)
    deadline = time.monotonic() + 8  # removed by a thread, after the kernel has unbound it
    while Path("/sys/block", mine[0]).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path("/sys/block", mine[0]).exists()
