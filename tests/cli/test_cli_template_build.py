"""`sandlot template build -f Dockerfile NAME`, `template list` and `template delete` against a
real server (typer's CliRunner, in-process): the Dockerfile subset, the log and its failures."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from sandlot import Sandbox, Template
from sandlot.cli.main import app

runner = CliRunner()

DOCKERFILE = """\
# a comment
FROM base
ENV GREETING="hello world" \\
    STAGE=cli
COPY app.py /opt/app/
COPY --chown=user:user --chmod=0755 bin /home/user/bin
WORKDIR /srv
RUN echo "$GREETING" > greeting.txt && id -un > builder.txt
RUN ["sh", "-c", "echo exec-form > /srv/exec.txt"]
LABEL ignored=yes
USER user
CMD python3 -m http.server 8123 --directory /srv
"""


@pytest.fixture
def cli(server):
    env = {"SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}

    def invoke(*args: str):
        return runner.invoke(app, ["template", *args], env=env)

    return invoke


@pytest.fixture
def project(tmp_path):
    (tmp_path / "app.py").write_text("print('app')\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


def test_build_list_create_delete(cli, server, project):
    conn = {"api_url": server.url, "api_key": server.api_key}
    name = "cli-" + uuid.uuid4().hex[:8]
    built = cli("build", "-f", str(project / "Dockerfile"), f"{name}:v1")
    assert built.exit_code == 0, built.output
    assert built.stdout.startswith(f"built {name} (v1)")
    assert "[4/" in built.stderr and "RUN echo" in built.stderr  # the log (not a terminal: every step line)
    try:
        listed = json.loads(cli("list", "--json").stdout)
        mine = [t for t in listed if t["name"] == name]
        assert len(mine) == 1 and mine[0]["status"] == "ready" and mine[0]["tags"] == ["v1"], listed
        assert name in cli("list", "-q").stdout.split()

        with Sandbox.create(f"{name}:v1", timeout=120, **conn) as sbx:
            assert sbx.files.read("/srv/greeting.txt") == "hello world\n"
            assert sbx.files.read("/srv/builder.txt") == "root\n"  # Dockerfile steps run as root
            assert sbx.files.read("/srv/exec.txt") == "exec-form\n"
            assert sbx.commands.run("python3 /opt/app/app.py").stdout == "app\n"
            assert sbx.commands.run("stat -c '%U %a' /home/user/bin/tool").stdout == "user 755\n"
            assert sbx.commands.run("/home/user/bin/tool").stdout == "tool\n"
            assert sbx.commands.run("echo $STAGE").stdout == "cli\n"
            # CMD is the start command: it runs in every sandbox made from the template
            assert "http.server 8123" in sbx.commands.run("ps -eo args").stdout

        again = cli("build", "-f", str(project / "Dockerfile"), f"{name}:v1")
        assert again.exit_code == 0 and again.stderr.count("CACHED") >= 4, again.stderr
    finally:
        deleted = cli("delete", name)
    assert deleted.exit_code == 0 and deleted.stdout == f"deleted {name}\n"
    gone = cli("delete", name)
    assert (gone.exit_code, gone.stderr) == (1, f'error: template "{name}" not found\n')


def test_a_failing_step_shows_its_output(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM base\nRUN echo before\nRUN echo why-it-broke >&2 && false\n")
    name = "cli-" + uuid.uuid4().hex[:8]
    failed = cli("build", "-f", str(tmp_path / "Dockerfile"), name)
    try:
        assert failed.exit_code == 1
        assert "why-it-broke" in failed.stderr and "exited with code 1" in failed.stderr, failed.stderr
    finally:
        cli("delete", name)


@pytest.mark.parametrize(("dockerfile", "message"), [
    ("RUN true\n", "must start with FROM"),
    ("FROM base\nADD x /x\n", "ADD is not supported"),
    ("FROM base AS build\nRUN true\n", "no stages"),
    ("FROM base\nCOPY missing.txt /x\n", "nothing matches"),
    ("FROM base\nCOPY ../outside /x\n", "outside the build context"),
    ("FROM ubuntu:24.04\n", "cannot pull"),
])
def test_refused_dockerfiles(cli, tmp_path, dockerfile, message):
    (tmp_path / "sub").mkdir()
    (tmp_path / "outside").write_text("x")
    (tmp_path / "sub" / "Dockerfile").write_text(dockerfile)
    name = "cli-" + uuid.uuid4().hex[:8]
    refused = cli("build", "-f", str(tmp_path / "sub" / "Dockerfile"), name)
    try:
        assert refused.exit_code == 1 and message in refused.stderr, refused.output
    finally:
        cli("delete", name)


def test_from_a_local_docker_save_archive(cli, server, tmp_path):
    """FROM ./image.tar: the CLI uploads the archive (streamed) and the server builds on it."""
    from image_archive_support import make_docker_save
    from support import TEMPLATE_CACHE

    make_docker_save(tmp_path / "image.tar", TEMPLATE_CACHE / "base" / "rootfs")
    (tmp_path / "Dockerfile").write_text("FROM ./image.tar\nRUN cat /opt/image/hello.txt > /srv.txt\n")
    name = "cli-" + uuid.uuid4().hex[:8]
    built = cli("build", "-f", str(tmp_path / "Dockerfile"), name)
    try:
        assert built.exit_code == 0, built.output
        assert "unpacking 2 layer(s)" in built.stderr
        with Sandbox.create(name, timeout=60, api_url=server.url, api_key=server.api_key) as sbx:
            assert sbx.files.read("/srv.txt") == "hello from the image\n"
            assert sbx.commands.run("echo $IMAGE_VAR").stdout == "from-the-image\n"
    finally:
        cli("delete", name)


async def test_the_async_sdk_builds_from_dockerfile_text(server, tmp_path):
    from sandlot import AsyncSandbox, AsyncTemplate

    conn = {"api_url": server.url, "api_key": server.api_key}
    name = "sdk-" + uuid.uuid4().hex[:8]
    lines: list[str] = []
    info = await AsyncTemplate.build(name, dockerfile="FROM base\nRUN echo async > /tmp/x && cp /tmp/x /srv.txt\n",
                                     context=tmp_path, on_log=lambda e: lines.append(e.message), **conn)
    try:
        assert info.name == name and info.steps == 5  # USER root, WORKDIR /, RUN, and E2B's USER/WORKDIR
        assert any(line.startswith("[3/5] RUN") for line in lines), lines
        sbx = await AsyncSandbox.create(name, timeout=60, **conn)
        try:
            assert await sbx.files.read("/srv.txt") == "async\n"
        finally:
            await sbx.kill()
        assert [t.name for t in await AsyncTemplate.list(**conn)].count(name) == 1
    finally:
        assert await AsyncTemplate.delete(name, **conn)
    assert not Template.delete(name, **conn)
