"""The native SDK's snapshots, fork, pause modes and volumes, on both surfaces (blocking and async)."""

from __future__ import annotations

import uuid

import pytest

from sandlot import SandlotError
from sandlot.client import AsyncVolume, Volume
from sdk_support import maybe


async def test_snapshot_create_from_it_list_and_delete(sdk, sandbox):
    cls, conn = sdk
    name = "n" + uuid.uuid4().hex[:10]
    await maybe(sandbox.files.write("/home/user/kept.txt", "kept"))
    snap = await maybe(sandbox.create_snapshot(name=name))
    assert snap.snapshot_id == f"{name}:default" and snap.names == [snap.snapshot_id]
    child = await maybe(cls.create(name, timeout=60, **conn))
    try:
        assert await maybe(child.files.read("/home/user/kept.txt")) == "kept"
    finally:
        await maybe(child.kill())
        await maybe(child.close())
    listed = await maybe(cls.list_snapshots(sandbox_id=sandbox.sandbox_id, **conn))
    assert [s.snapshot_id for s in listed] == [snap.snapshot_id]
    # through the server's storage and back (as another host would), under another name
    exported = await maybe(cls.export_snapshot(snap.snapshot_id, **conn))
    assert exported.snapshot_id == snap.snapshot_id and exported.export_id.startswith("snap")
    copy = await maybe(cls.import_snapshot(exported.export_id, name=name + "-copy", **conn))
    assert copy.snapshot_id == f"{name}-copy:default"
    assert await maybe(cls.delete_snapshot(copy.snapshot_id, **conn)) is True
    assert await maybe(cls.delete_snapshot(snap.snapshot_id, **conn)) is True
    assert await maybe(cls.delete_snapshot(snap.snapshot_id, **conn)) is False


async def test_fork_by_instance_and_by_id(sdk, sandbox):
    cls, conn = sdk
    await maybe(sandbox.files.write("/home/user/f.txt", "parent"))
    kids = await maybe(sandbox.fork(count=2, timeout=60))
    more = await maybe(cls.fork(sandbox.sandbox_id, **conn))
    try:
        assert len(kids) == 2 and len(more) == 1
        for kid in [*kids, *more]:
            assert isinstance(kid, cls)  # the surface's own class, by instance and by id
            assert await maybe(kid.files.read("/home/user/f.txt")) == "parent"
        assert len({k.sandbox_id for k in [*kids, *more]} | {sandbox.sandbox_id}) == 4
    finally:
        for kid in [*kids, *more]:
            await maybe(kid.kill())
            await maybe(kid.close())


async def test_filesystem_pause(sdk, sandbox):
    cls, conn = sdk
    await maybe(sandbox.files.write("/home/user/p.txt", "paused"))
    assert await maybe(sandbox.pause(mode="filesystem")) is True
    assert (await maybe(sandbox.get_info())).state == "paused"
    back = await maybe(cls.connect(sandbox.sandbox_id, **conn))
    try:
        assert await maybe(back.files.read("/home/user/p.txt")) == "paused"
    finally:
        await maybe(back.close())
    with pytest.raises(SandlotError):
        await maybe(sandbox.pause(mode="neither"))


async def test_volumes(sdk, server, surface):
    cls, conn = sdk
    vcls = Volume if surface == "sync" else AsyncVolume
    name = "v" + uuid.uuid4().hex[:10]
    vol = await maybe(vcls.create(name, size_mb=64, **conn))
    try:
        a = await maybe(cls.create(timeout=60, volume_mounts={"/data": name}, **conn))
        b = await maybe(cls.create(timeout=60, volume_mounts={"/shared": vol}, **conn))
        try:
            await maybe(a.files.write("/data/x.txt", "shared"))
            assert await maybe(b.files.read("/shared/x.txt")) == "shared"
        finally:
            for s in (a, b):
                await maybe(s.kill())
                await maybe(s.close())
        assert name in [v.name for v in await maybe(vcls.list(**conn))]
    finally:
        assert await maybe(vcls.destroy(name, **conn)) is True
    assert await maybe(vcls.destroy(name, **conn)) is False
