"""Files through the agent: what is written is read back and seen by processes inside; paths never
lead out of the sandbox, and the runtime's own walks (disk_used, kill) follow no planted link."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from sandlot import SandlotError


async def _read(box, path: str) -> bytes:
    chunks = [c async for c in box.agent.read(path)]
    return b"".join(chunks[1:])  # after the ENTRY


async def test_write_read_list_move_remove(sandbox):
    data = os.urandom(1_500_000)  # several wire chunks
    entry = await sandbox.agent.write("/home/user/dir/blob", None, data)  # parents are made
    assert (entry["type"], entry["size"], entry["owner"]) == ("file", len(data), "user")
    assert await _read(sandbox, "/home/user/dir/blob") == data
    inside = await sandbox.run("sha256sum dir/blob")  # relative to the user's home, like the agent's
    assert inside.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert [e["name"] for e in await sandbox.agent.list_dir("/home/user/dir")] == ["blob"]
    await sandbox.agent.move("/home/user/dir/blob", "/home/user/dir/moved")
    assert (await sandbox.agent.stat("/home/user/dir/moved"))["size"] == len(data)
    await sandbox.agent.remove("/home/user/dir")
    assert (await sandbox.run("test -e ~/dir")).exit_code != 0
    await sandbox.agent.write("/tmp/in-tmp", None, b"tmp is writable too")
    assert (await sandbox.run("cat /tmp/in-tmp")).stdout == b"tmp is writable too"


@pytest.fixture
def host_dir(runtime):
    """A directory on the host, next to the runtime's state, that no sandbox may read or change."""
    path = Path(tempfile.mkdtemp(prefix="sandlot-host-files-"))
    (path / "secret").write_text("host secret")
    (path / "big").write_bytes(b"\0" * (8 << 20))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


async def test_paths_never_lead_out_of_the_sandbox(sandbox, host_dir):
    secret = host_dir / "secret"
    for path in (str(secret), "../../../../../../.." + str(secret), "/home/user/../../.." + str(secret)):
        with pytest.raises(SandlotError) as e:
            await _read(sandbox, path)
        assert e.value.code == "not_found", (path, e.value)
    # a symlink made inside points into the sandbox's own tree, whatever its text
    await sandbox.run(f"ln -s {secret} ~/link; ln -s {host_dir} ~/dirlink")
    for path in ("/home/user/link", "/home/user/dirlink/secret"):
        with pytest.raises(SandlotError) as e:
            await _read(sandbox, path)
        assert e.value.code == "not_found", (path, e.value)
    # writes through such paths land inside, if anywhere
    name = f"written-{uuid.uuid4().hex}"
    for path in ("../../../../../../.." + str(host_dir / name), f"/home/user/dirlink/{name}"):
        try:
            await sandbox.agent.write(path, None, b"from the sandbox")
        except SandlotError as e:
            assert e.code in ("not_found", "permission_denied"), e
    assert sorted(p.name for p in host_dir.iterdir()) == ["big", "secret"]
    assert secret.read_text() == "host secret"


async def test_the_runtime_follows_no_planted_link(runtime, make_sandbox, host_dir):
    box = make_sandbox()
    before = runtime.disk_used(box.id)
    # as each runtime's writable layer sees them on the host: links to a host directory and file
    await box.run(f"ln -s {host_dir} ~/escape; ln -s {host_dir}/big ~/big; mkdir -p ~/d && ln -s / ~/d/root")
    assert runtime.disk_used(box.id) - before < (1 << 20)  # the host's 8 MiB file is not the sandbox's
    runtime.kill(box.id)
    assert sorted(p.name for p in host_dir.iterdir()) == ["big", "secret"]  # removal followed no link
    assert (host_dir / "big").stat().st_size == 8 << 20
