"""An idle sandbox's usage costs one small read (runtimes/namespace.py usage): the metrics pass
reads every sandbox every 5 s, and memory.stat's parse was most of what 2000 idle sandboxes cost
the server. A reading comes back as it was while the sandbox uses no CPU, and is fresh once it
does."""

import asyncio
import os

import pytest
from agent_support import AgentClient, collect
from support import runtime_home

from sandlot.runtimes import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not cgroups.detect(), reason="needs root and cgroups")


def test_an_idle_sandbox_s_reading_is_reused_and_a_busy_one_s_is_fresh(tmp_path):
    from sandlot.runtimes.namespace import NamespaceRuntime
    from sandlot.runtimes.policy import SandboxSpec

    home, template = runtime_home(tmp_path)
    runtime = NamespaceRuntime(home)
    sid = "iusagereads000000000"
    try:
        rt = runtime.create(SandboxSpec(sid, "base"), template)
        first = runtime.usage(sid)
        for _ in range(50):  # the agent settles after its start
            again = runtime.usage(sid, first)
            if again is first:
                break
            first = again
        assert runtime.usage(sid, first) is first  # idle: no CPU used, nothing else read
        agent = AgentClient(str(rt.socket_path))
        code = "x=$(head -c 20000000 /dev/zero | tr '\\\\0' a | wc -c); sleep 0.2; echo $x"
        result = asyncio.run(collect(agent.start("/bin/bash", ["-c", code])))
        assert result.exit_code == 0 and result.stdout.strip() == b"20000000"
        busy = runtime.usage(sid, first)
        assert busy is not first and busy.cpu_usage_ns > first.cpu_usage_ns
        assert busy.memory_bytes > 0 and busy.pids >= 1
    finally:
        runtime.kill(sid)
        runtime.close()
