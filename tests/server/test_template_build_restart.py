"""Templates built from recipes across a server stop: a running build ends (its sandbox and layers
gone, the build recorded as interrupted), built templates stay and start sandboxes after the
restart, and deleting them leaves nothing (docs/templates.md)."""

from __future__ import annotations

import time

from e2b import Sandbox, Template
from support import leftovers, sdk_environment, start_server, tracebacks


def _wait_for(info, text: str) -> None:
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = Template.get_build_status(info, logs_offset=len(seen))
        seen += [e.message for e in status.log_entries]
        if any(text in m for m in seen):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never showed: {seen}")


def test_a_stop_ends_running_builds_and_keeps_built_templates(tmp_path):
    home = tmp_path / "home"
    srv = start_server(home, pool_size=0)
    try:
        with sdk_environment(srv):
            Template.build(Template().from_template("base").run_cmd("echo kept > /home/user/k"), "kept")
            info = Template.build_in_background(
                Template().from_template("base").run_cmd("echo running; sleep 120"), "slow")
            _wait_for(info, "running")
        srv.stop()
        # the build's sandbox went with the server; only the built template's layer stays
        left = leftovers(home)
        assert len(left) == 1 and "/layers/" in left[0], left

        srv = start_server(home, pool_size=0)
        with sdk_environment(srv):
            status = Template.get_build_status(info)
            assert status.status.value == "error" and "interrupted" in status.reason.message, status
            with Sandbox.create("kept") as sbx:
                assert sbx.files.read("/home/user/k") == "kept\n"
            assert Sandbox.delete_snapshot("kept") and Sandbox.delete_snapshot("slow")  # E2B's DELETE /templates
    finally:
        srv.stop()
    assert not leftovers(home)
    assert not tracebacks(srv.log.read_text(errors="replace"))
