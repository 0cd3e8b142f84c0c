"""disk_mb: each sandbox writes on a disk of its own of that size (runtimes/disk.py), whatever the
path; no file grows past it either (RLIMIT_FSIZE), which root inside cannot lift."""

from __future__ import annotations

from e2b import CommandExitException


def test_disk_mb_bounds_the_sandbox_and_root_cannot_lift_it(make_sandbox, server):
    sbx = make_sandbox(disk_mb=20)
    try:
        sbx.commands.run("head -c 30M /dev/zero > /home/user/big")
        raise AssertionError("a 30 MiB file was written under disk_mb=20")
    except CommandExitException as e:
        assert e.exit_code != 0
    size = int(sbx.commands.run("stat -c %s /home/user/big").stdout)
    assert size <= 20 * 1024 * 1024
    sbx.commands.run("rm /home/user/big && head -c 10M /dev/zero > /home/user/small")  # within: fine
    try:  # /tmp is on the same disk: 10 MiB more do not fit
        sbx.commands.run("head -c 10M /dev/zero > /tmp/more", user="root")
        raise AssertionError("/tmp took 10 MiB more than disk_mb=20 holds")
    except CommandExitException as e:
        assert "No space left" in e.stderr
    # df inside tells the truth: the disk is the sandbox's own, of disk_mb
    total_mb = int(sbx.commands.run("df -BM --output=size / | tail -1").stdout.strip().rstrip("M"))
    assert 16 <= total_mb <= 20, total_mb
    try:
        sbx.commands.run("ulimit -f unlimited", user="root")
        raise AssertionError("root inside raised its file size limit")
    except CommandExitException as e:
        assert e.exit_code != 0
    assert "DEGRADED ISOLATION: disk" not in server.log.read_text()


def test_an_upload_past_disk_mb_is_a_clear_507_and_leaves_no_partial_file(make_sandbox):
    from e2b.exceptions import NotEnoughSpaceException

    sbx = make_sandbox(disk_mb=20)
    sbx.files.write("/home/user/keep.txt", "old")
    try:
        sbx.files.write("/home/user/keep.txt", b"\0" * (30 << 20))
        raise AssertionError("a 30 MiB upload succeeded under disk_mb=20")
    except NotEnoughSpaceException as e:
        assert "no space left" in str(e).lower()
    assert sbx.files.read("/home/user/keep.txt") == "old"  # a failed overwrite destroys nothing
    assert sbx.commands.run("echo alive").stdout == "alive\n"
