"""Volumes through the official SDK (sync and async): created, mounted into sandboxes at create,
shared between them, surviving them, with a hard quota; the content API; deletion."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox
from e2b.exceptions import VolumeException
from e2b_support import SDK_VERSION, assert_json_error
from support import kill_quietly, unique
from packaging.version import Version

pytestmark = pytest.mark.skipif(SDK_VERSION < Version("2.55"), reason="volumes need a recent e2b SDK")


@pytest.fixture
def volumes(sdk_env, monkeypatch):
    """The Volume class, its content API pointed at the server; volumes made are destroyed."""
    from e2b import Volume

    monkeypatch.setenv("E2B_VOLUME_API_URL", sdk_env.url)
    made = []

    def create(name=None):
        vol = Volume.create(name or unique("vol"))
        made.append(vol)
        return vol

    yield create
    for vol in made:
        Volume.destroy(vol.volume_id)


def test_a_volume_is_shared_and_outlives_its_sandboxes(volumes, make_sandbox, server):
    from e2b import Volume

    vol = volumes()
    assert vol.volume_id.startswith("vol") and vol.token
    a = make_sandbox(timeout=120, volume_mounts={"/data": vol})
    b = make_sandbox(timeout=120, volume_mounts={"/mnt/shared": vol.name})  # by name too
    a.files.write("/data/from-a.txt", "written by a")
    assert b.files.read("/mnt/shared/from-a.txt") == "written by a"
    assert b.commands.run("stat -c %U /mnt/shared/from-a.txt").stdout.strip() == "user"
    assert [m["path"] for m in a.get_info().volume_mounts] == ["/data"]
    a.kill()
    b.kill()
    c = make_sandbox(timeout=120, volume_mounts={"/data": vol})
    assert c.files.read("/data/from-a.txt") == "written by a"
    # the content API sees the same files, owned as sandboxes see them
    assert vol.read_file("/from-a.txt") == "written by a"
    info = vol.get_info("/from-a.txt")
    assert info.uid == 1000 and info.size == len("written by a")
    vol.write_file("/from-api.txt", "hello from the API")
    assert c.files.read("/data/from-api.txt") == "hello from the API"
    assert sorted(e.name for e in vol.list("/")) == ["from-a.txt", "from-api.txt"]
    assert [v.volume_id for v in Volume.list() if v.volume_id == vol.volume_id] == [vol.volume_id]
    # in use: not deleted
    assert_json_error(httpx.delete(f"{server.url}/volumes/{vol.volume_id}",
                                   headers={"X-API-KEY": server.api_key}), 409)


def test_the_size_is_a_hard_quota(server, make_sandbox, sdk_env):
    r = httpx.post(f"{server.url}/volumes", json={"name": unique("small"), "sizeMB": 32},
                   headers={"X-API-KEY": server.api_key})
    assert r.status_code == 201, r.text
    vol = r.json()
    try:
        sbx = make_sandbox(timeout=120, volume_mounts={"/v": vol["name"]})
        r2 = sbx.commands.run("dd if=/dev/zero of=/v/big bs=1M count=64 2>&1 || echo FULL", timeout=60)
        assert "FULL" in r2.stdout and "No space left" in r2.stdout
        used = int(sbx.commands.run("du -m /v/big | cut -f1").stdout)
        assert 20 <= used <= 32
        sbx.kill()
    finally:
        httpx.delete(f"{server.url}/volumes/{vol['volumeID']}", headers={"X-API-KEY": server.api_key})


def test_volume_errors(volumes, server, sdk_env):
    headers = {"X-API-KEY": server.api_key}
    vol = volumes()
    assert_json_error(httpx.post(f"{server.url}/volumes", json={"name": vol.name}, headers=headers), 409)
    assert_json_error(httpx.post(f"{server.url}/volumes", json={"name": "bad name"}, headers=headers), 400)
    assert_json_error(httpx.get(f"{server.url}/volumes/{unique('none')}", headers=headers), 404)
    for path in ("/", "/proc/x", "/run/sandlot", "relative"):
        r = httpx.post(f"{server.url}/v2/sandboxes", headers=headers,
                       json={"templateID": "base", "volumeMounts": [{"name": vol.name, "path": path}]})
        assert_json_error(r, 400)
    r = httpx.post(f"{server.url}/v2/sandboxes", headers=headers,
                   json={"templateID": "base", "volumeMounts": [{"name": unique("none"), "path": "/d"}]})
    assert_json_error(r, 404)
    # the content API wants the volume's own token
    r = httpx.get(f"{server.url}/volumecontent/{vol.volume_id}/path", params={"path": "/"},
                  headers={"Authorization": "Bearer wrong"})
    assert_json_error(r, 401)
    # a sandbox's symlink on the volume never leads the content API out of it
    sbx = Sandbox.create(timeout=60, volume_mounts={"/v": vol})
    try:
        sbx.commands.run("ln -s /etc /v/escape && ln -s /etc/passwd /v/pw")
        with pytest.raises(VolumeException):
            vol.read_file("/escape/hostname")
        with pytest.raises(VolumeException):
            vol.read_file("/pw")
        assert vol.get_info("/pw").type.value == "symlink"
    finally:
        kill_quietly(sbx)


async def test_async_volume(sdk_env, monkeypatch):
    from e2b import AsyncVolume

    monkeypatch.setenv("E2B_VOLUME_API_URL", sdk_env.url)
    vol = await AsyncVolume.create(unique("avol"))
    try:
        await vol.write_file("/seed.txt", "seeded")
        sbx = await AsyncSandbox.create(timeout=60, volume_mounts={"/seed": vol})
        try:
            assert await sbx.files.read("/seed/seed.txt") == "seeded"
        finally:
            await sbx.kill()
    finally:
        await AsyncVolume.destroy(vol.volume_id)


def test_content_writes_are_whole_or_nothing_and_never_open_a_fifo(server, make_sandbox, sdk_env):
    """An upload lands complete or not at all (a failed one keeps the old file), and a FIFO, device
    or directory a sandbox put at the path is refused at once: the server never blocks on it."""
    r = httpx.post(f"{server.url}/volumes", json={"name": unique("whole"), "sizeMB": 32},
                   headers={"X-API-KEY": server.api_key})
    assert r.status_code == 201, r.text
    vol = r.json()
    content = httpx.Client(base_url=f"{server.url}/volumecontent/{vol['volumeID']}", timeout=30,
                           headers={"Authorization": f"Bearer {vol['token']}"})
    try:
        assert content.put("/file", params={"path": "/kept.txt"}, content=b"old").status_code == 201
        # past the volume's size: ENOSPC midway, answered 429; the old content stays, nothing is left over
        r = content.put("/file", params={"path": "/kept.txt"}, content=b"x" * (40 << 20))
        assert "full" in assert_json_error(r, 429)["message"]
        assert content.get("/file", params={"path": "/kept.txt"}).content == b"old"
        assert [e["name"] for e in content.get("/dir", params={"path": "/"}).json()] == ["kept.txt"]
        sbx = make_sandbox(timeout=120, volume_mounts={"/v": vol["name"]})
        sbx.commands.run("mkfifo /v/pipe && mkdir /v/dir && ln -s /etc/passwd /v/link")
        for path in ("/pipe", "/dir", "/link"):
            started = time.monotonic()
            assert_json_error(content.put("/file", params={"path": path}, content=b"x"), 400)
            assert time.monotonic() - started < 5
        assert content.get("/file", params={"path": "/pipe"}).status_code == 400
        assert sbx.commands.run("stat -c %F /v/pipe /v/link && cat /etc/passwd | head -1").stdout.startswith(
            "fifo\nsymbolic link\nroot:")
        sbx.kill()
    finally:
        content.close()
        httpx.delete(f"{server.url}/volumes/{vol['volumeID']}", headers={"X-API-KEY": server.api_key})


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_file_is_streamed_from_a_volume_never_held_whole(server, make_sandbox, volumes):
    """A sandbox's sparse file of 2 GiB (no disk: `truncate`) is sent as it is read: the server's
    memory stays flat, and the client that stops early stops the read. Held whole, one of 1 TiB
    was the server's end."""
    vol = volumes()
    sbx = make_sandbox(timeout=60, volume_mounts={"/v": vol})
    sbx.commands.run("truncate -s 2G /v/sparse && printf hello > /v/small")
    sbx.kill()
    assert vol.read_file("/small") == "hello"
    base, peak, done = _rss(server.proc.pid), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss(server.proc.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with httpx.stream("GET", f"{server.url}/volumecontent/{vol.volume_id}/file", params={"path": "/sparse"},
                          headers={"Authorization": f"Bearer {vol.token}"}, timeout=60) as r:
            assert r.status_code == 200
            got = 0
            for chunk in r.iter_raw():
                got += len(chunk)
                if got >= 64 << 20:
                    break
    finally:
        done.set()
        sampler.join()
    assert peak[0] - base < 256 << 20, f"the server grew by {(peak[0] - base) >> 20} MiB"
