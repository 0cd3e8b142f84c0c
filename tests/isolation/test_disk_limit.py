"""disk_mb: no file in a sandbox grows past it (the writable layer has no quota on this kernel, and
the server says so at start)."""

from __future__ import annotations

from e2b import CommandExitException


def test_no_file_grows_past_disk_mb_and_root_cannot_lift_it(make_sandbox, server):
    sbx = make_sandbox(disk_mb=20)
    try:
        sbx.commands.run("head -c 30M /dev/zero > /home/user/big")
        raise AssertionError("a 30 MiB file was written under disk_mb=20")
    except CommandExitException as e:
        assert e.exit_code != 0
    size = int(sbx.commands.run("stat -c %s /home/user/big").stdout)
    assert size <= 20 * 1024 * 1024
    sbx.commands.run("head -c 10M /dev/zero > /home/user/small")  # below the limit: fine
    try:
        sbx.commands.run("ulimit -f unlimited", user="root")
        raise AssertionError("root inside raised its file size limit")
    except CommandExitException as e:
        assert e.exit_code != 0
    assert "DEGRADED ISOLATION: disk: the writable layer has no quota" in server.log.read_text()


def test_an_upload_past_disk_mb_is_a_clear_507_and_leaves_no_partial_file(make_sandbox):
    from e2b.exceptions import NotEnoughSpaceException

    sbx = make_sandbox(disk_mb=20)
    sbx.files.write("/home/user/keep.txt", "old")
    try:
        sbx.files.write("/home/user/keep.txt", b"\0" * (30 << 20))
        raise AssertionError("a 30 MiB upload succeeded under disk_mb=20")
    except NotEnoughSpaceException as e:
        assert "too large" in str(e).lower()
    assert sbx.files.read("/home/user/keep.txt") == "old"  # a failed overwrite destroys nothing
    assert sbx.commands.run("echo alive").stdout == "alive\n"
