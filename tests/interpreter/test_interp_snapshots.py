"""The code interpreter on sandboxes made from snapshots, forks and cold resumes: their kernels
start fresh (variables are not carried: files are), and run code at once."""

from __future__ import annotations

from e2b_code_interpreter import Sandbox


def test_snapshot_fork_and_cold_resume_keep_files_and_start_fresh_kernels(make_sandbox):
    sbx = make_sandbox()
    assert sbx.run_code("x = 41\nopen('/home/user/kept.txt', 'w').write('file'); x + 1").text == "42"
    snap = sbx.create_snapshot()
    try:
        child = make_sandbox(template=snap.snapshot_id)
        kid = sbx.fork(count=1, timeout=120)[0]
        for other in (child, Sandbox.connect(kid.sandbox_id)):
            run = other.run_code("print(open('/home/user/kept.txt').read()); 'x' in globals()")
            assert run.logs.stdout == ["file\n"] and run.text == "False"
        kid.kill()
        assert sbx.pause(mode="filesystem") is True
        back = Sandbox.connect(sbx.sandbox_id)
        assert back.run_code("open('/home/user/kept.txt').read()").text == "file"
    finally:
        Sandbox.delete_snapshot(snap.snapshot_id)
