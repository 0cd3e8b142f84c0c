"""Templates from images with the official SDK's `Template` builder: a `docker save` archive (made
here by hand in Docker's format: manifest.json, a config, layer tars with whiteouts) and
`from_debian_image()` (debootstrap from the host's mirror, built once into the shared template
cache, /var/tmp/sandlot-test-home: the first run takes minutes, later ones reuse it).
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from e2b import AsyncSandbox, AsyncTemplate, BuildException, Sandbox, Template
from e2b_support import run
from image_archive_support import make_docker_save
from support import TEMPLATE_CACHE


@pytest.fixture(scope="module")
def image_archive(server) -> str:
    images = server.home / "images"
    images.mkdir(exist_ok=True)
    make_docker_save(images / "test-image.tar", TEMPLATE_CACHE / "base" / "rootfs")
    return "docker-archive:test-image.tar"


@pytest.fixture
def names(server):
    made: list[str] = []
    yield made
    for name in made:
        httpx.delete(f"{server.url}/templates/{name}", headers={"X-API-KEY": server.api_key}, timeout=60)


def _name() -> str:
    return f"img-{uuid.uuid4().hex[:8]}"


def test_from_a_docker_save_archive(image_archive, names):
    name = _name()
    names.append(name)
    seen: list[str] = []
    Template.build(Template().from_image(image_archive).run_cmd("cat /opt/image/hello.txt > /home/user/seen"),
                   name, on_build_logs=lambda e: seen.append(e.message))
    assert any("unpacking 2 layer(s)" in m for m in seen), seen
    with Sandbox.create(name) as sbx:
        assert sbx.files.read("/home/user/seen") == "hello from the image\n"
        assert sbx.commands.run("echo $IMAGE_VAR").stdout == "from-the-image\n"  # the image's Env
        assert run(sbx, "test -e /etc/motd")[0] == 1  # whiteout applied
        assert run(sbx, "ls /opt/replaced")[1] == "new.txt\n"  # opaque directory applied
        assert run(sbx, "stat -c %U /usr/bin")[1] == "root\n"
    # a second build reuses the imported layer
    again: list[str] = []
    Template.build(Template().from_image(image_archive).run_cmd("true"), name, on_build_logs=lambda e: again.append(
        e.message))
    assert any("CACHED (the archive" in m for m in again), again


def test_from_a_docker_save_archive_async(image_archive, names):
    name = _name()
    names.append(name)

    async def main():
        await AsyncTemplate.build(AsyncTemplate().from_image(image_archive).set_envs({"K": "v"}), name)
        sbx = await AsyncSandbox.create(name)
        try:
            assert (await sbx.commands.run("echo $K; cat /opt/image/hello.txt")).stdout == "v\nhello from the image\n"
        finally:
            await sbx.kill()

    asyncio.run(main())


def test_archives_outside_the_images_directory_are_refused(server, names):
    name = _name()
    names.append(name)
    for image in ("docker-archive:../server.log", "/etc/passwd.tar", "docker-archive:missing.tar"):
        with pytest.raises(BuildException) as failed:
            Template.build(Template().from_image(image), name)
        assert "images" in str(failed.value), str(failed.value)


def test_not_an_archive(server, names):
    (server.home / "images").mkdir(exist_ok=True)
    (server.home / "images" / "junk.tar").write_bytes(b"not a tar at all" * 100)
    name = _name()
    names.append(name)
    with pytest.raises(BuildException) as failed:
        Template.build(Template().from_image("docker-archive:junk.tar"), name)
    assert "not a docker save archive" in str(failed.value)


@pytest.mark.timeout(1800)  # the first run debootstraps (minutes); the shared template cache keeps it
def test_from_debian_image_end_to_end(names):
    name = _name()
    names.append(name)
    Template.build(Template().from_debian_image().run_cmd("cat /etc/debian_version > /home/user/version"), name)
    with Sandbox.create(name) as sbx:
        version = sbx.files.read("/home/user/version")
        assert version.strip().split(".")[0].isdigit(), version
        assert run(sbx, "dpkg -s git")[0] != 0  # the plain image, not `base` (which has git)
    with pytest.raises(BuildException) as failed:
        Template.build(Template().from_debian_image("sid"), name)
    assert "only the host's release" in str(failed.value)
