"""`sandlot volume ...` and `sandlot create -v NAME:/path` against a real server (typer's CliRunner,
in-process): a volume made, mounted by two sandboxes, outliving them, listed and deleted."""

from __future__ import annotations

import json
import uuid

from sandlot import Sandbox, Volume


def test_a_volume_made_mounted_by_two_sandboxes_and_deleted(cli, server):
    conn = {"api_url": server.url, "api_key": server.api_key}
    name = "cli" + uuid.uuid4().hex[:8]
    made = cli("volume", "create", name, "--size-mb", "64")
    assert made.exit_code == 0, made.output
    volume_id = made.stdout.strip()
    assert volume_id.startswith("vol")
    kids = []
    try:
        first = cli("create", "-v", f"{name}:/data", "--timeout", "60")
        assert first.exit_code == 0, first.output
        kids.append(first.stdout.strip())
        a = Sandbox.connect(kids[0], **conn)
        a.files.write("/data/from-a.txt", "written by a")
        # by id too, at another path; mounts show in the sandbox's own JSON
        second = cli("create", "--volume", f"{volume_id}:/mnt/shared", "--timeout", "60", "--json")
        assert second.exit_code == 0, second.output
        kids.append(json.loads(second.stdout)["sandbox_id"])
        b = Sandbox.connect(kids[1], **conn)
        assert b.files.read("/mnt/shared/from-a.txt") == "written by a"

        assert f"{volume_id}\n" in cli("volume", "list", "-q").stdout
        assert {"volume_id": volume_id, "name": name} in json.loads(cli("volume", "list", "--json").stdout)
        busy = cli("volume", "delete", name)  # mounted: refused, and its files kept
        assert busy.exit_code == 1 and busy.stderr.startswith("error: "), busy.output
        for kid in kids:
            Sandbox.kill(kid, **conn)
        kids.clear()
        third = cli("create", "-v", f"{name}:/data", "--timeout", "60")  # it outlived both
        kids.append(third.stdout.strip())
        assert Sandbox.connect(kids[0], **conn).files.read("/data/from-a.txt") == "written by a"
        Sandbox.kill(kids.pop(), **conn)

        assert cli("volume", "delete", name).stdout == f"deleted {name}\n"
        gone = cli("volume", "delete", name)
        assert (gone.exit_code, gone.stderr) == (1, f'error: volume "{name}" not found\n')
        missing = cli("create", "-v", f"{name}:/data")
        assert missing.exit_code == 1 and name in missing.stderr, missing.output
    finally:
        for kid in kids:
            Sandbox.kill(kid, **conn)
        Volume.destroy(volume_id, **conn)


def test_a_malformed_mount_is_a_usage_error_and_makes_nothing(cli, server):
    before = cli("ls", "-q").stdout
    for bad in ("novolume", "name:relative/path", ":/data", "name:"):
        result = cli("create", "-v", bad)
        assert result.exit_code == 2 and "NAME:/absolute/path" in result.output, (bad, result.output)
    twice = cli("create", "-v", "a:/data", "-v", "b:/data")
    assert twice.exit_code == 2 and "two volumes at /data" in twice.output, twice.output
    assert cli("ls", "-q").stdout == before
