"""Templates built from recipes with the official SDK's `Template` builder (docs/templates.md):
from a sandlot template, steps of each kind, the step cache, logs, a failing step, tags, sandboxes
made from the result by name and name:tag, another team's view. Sync and async.

Images from a registry cannot be pulled here; `docker save` archives and debian:<host release> are
in test_e2b_template_images.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

import httpx
import pytest
from e2b import AsyncSandbox, AsyncTemplate, BuildException, Sandbox, Template, wait_for_file
from e2b_support import run
from test_e2b_teams import new_team


def _name(prefix: str = "tpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def names(server):
    """Template names a test builds; deleted afterwards (their layers must go with them)."""
    made: list[str] = []
    yield made
    for name in made:
        httpx.delete(f"{server.url}/templates/{name}", headers={"X-API-KEY": server.api_key}, timeout=60)


@pytest.fixture
def context(tmp_path):
    (tmp_path / "app.py").write_text("print('hello from app')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("A\n")
    (tmp_path / "data" / "b.txt").write_text("B\n")
    return tmp_path


def _logs():
    seen: list[str] = []
    return seen, lambda entry: seen.append(str(entry.message))


def test_steps_of_each_kind_and_create_by_name(server, context, names):
    name = _name()
    names.append(name)
    tpl = (Template(file_context_path=str(context)).from_template("base")
           .copy("app.py", "/home/user/app/")
           .copy("data", "/opt/data/", user="root", mode=0o640)
           .set_envs({"GREETING": "hi there", "STAGE": "test"})
           .run_cmd('echo "$GREETING" > /home/user/greeting.txt')
           .set_workdir("/srv/work")
           .run_cmd("pwd > where.txt && id -un > who.txt", user="root")
           .set_user("root")
           .run_cmd("id -un > /root/me.txt"))
    seen, on_logs = _logs()
    info = Template.build(tpl, name, on_build_logs=on_logs)
    assert info.name == name and info.template_id and info.build_id
    assert any("Build finished" in m for m in seen), seen
    # the uploads through the signed URL are in the audit trail, under the template's team
    audit = httpx.get(f"{server.url}/audit", params={"action": "template.files.upload"},
                      headers={"X-API-KEY": server.api_key}).json()["entries"]
    assert len([e for e in audit if e["outcome"] == "ok"]) >= 2 and all(e["team"] for e in audit), audit

    sbx = Sandbox.create(name)
    try:
        assert sbx.commands.run("python3 /home/user/app/app.py").stdout == "hello from app\n"
        assert run(sbx, "cat /home/user/greeting.txt")[1] == "hi there\n"
        assert run(sbx, "stat -c '%U %a' /opt/data/a.txt /opt/data/b.txt", user="root")[1] == "root 640\nroot 640\n"
        assert run(sbx, "cat /srv/work/where.txt /srv/work/who.txt")[1] == "/srv/work\nroot\n"
        # directories made for a COPY or a WORKDIR belong to the user steps run as
        assert run(sbx, "stat -c %U /home/user/app /srv/work")[1] == "user\nuser\n"
        assert run(sbx, "cat /root/me.txt", user="root")[1] == "root\n"
        assert sbx.commands.run("echo $STAGE").stdout == "test\n"  # the template's env vars stay
        assert sbx.get_info().template_id == name
    finally:
        sbx.kill()


def test_cache_hits_on_a_rebuild_and_skip_cache(context, names):
    name = _name()
    names.append(name)

    def recipe():
        return (Template(file_context_path=str(context)).from_template("base")
                .copy("app.py", "/home/user/")
                .run_cmd("date +%s%N > /home/user/stamp"))

    first, on_first = _logs()
    Template.build(recipe(), name, on_build_logs=on_first)
    assert not any(m == "CACHED" for m in first)
    with Sandbox.create(name) as sbx:
        stamp = sbx.files.read("/home/user/stamp")

    second, on_second = _logs()
    Template.build(recipe(), name, on_build_logs=on_second)
    assert sum(m == "CACHED" for m in second) == 2, second
    with Sandbox.create(name) as sbx:
        assert sbx.files.read("/home/user/stamp") == stamp  # the cached layer, not a new run

    third, on_third = _logs()
    Template.build(recipe(), name, skip_cache=True, on_build_logs=on_third)
    assert not any(m == "CACHED" for m in third)
    with Sandbox.create(name) as sbx:
        assert sbx.files.read("/home/user/stamp") != stamp


def test_a_deleted_templates_uploads_go_with_it(server, tmp_path):
    """The files `copy` uploaded go when the last template of the team that builds from them is
    deleted (they were kept forever)."""
    (tmp_path / "unique.txt").write_text(f"{uuid.uuid4()}\n")
    folder = server.home / "template-files" / hashlib.sha256(b"default").hexdigest()[:32]

    def kept() -> set[str]:
        return set(os.listdir(folder)) if folder.is_dir() else set()

    def delete(name: str) -> None:
        answer = httpx.delete(f"{server.url}/templates/{name}", headers={"X-API-KEY": server.api_key}, timeout=60)
        assert answer.status_code == 204, answer.text

    before, first, second = kept(), _name(), _name()
    recipe = Template(file_context_path=str(tmp_path)).from_template("base").copy("unique.txt", "/home/user/")
    Template.build(recipe, first)
    added = kept() - before
    assert len(added) == 1, added
    try:
        Template.build(recipe, second)  # the same files: present, not uploaded again
        assert kept() - before == added
    finally:
        delete(first)
    assert added <= kept()  # the second template's build names them
    delete(second)
    assert not added & kept()


def test_logs_stream_while_the_build_runs(names):
    name = _name()
    names.append(name)
    tpl = Template().from_template("base").run_cmd("echo early-line; sleep 4; echo late-line")
    info = Template.build_in_background(tpl, name)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = Template.get_build_status(info, logs_offset=len(seen))
        seen += [e.message for e in status.log_entries]
        if "early-line" in seen:
            assert status.status.value == "building" and "late-line" not in seen, (status.status, seen)
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no early output while building: {seen}")
    while status.status.value == "building":
        time.sleep(0.2)
        status = Template.get_build_status(info, logs_offset=len(seen))
        seen += [e.message for e in status.log_entries]
    assert status.status.value == "ready" and "late-line" in seen, (status.status, seen)


def test_a_failing_step_shows_its_output_and_keeps_the_previous_build(names):
    name = _name()
    names.append(name)
    Template.build(Template().from_template("base").run_cmd("echo v1 > /home/user/v"), name)
    seen, on_logs = _logs()
    bad = Template().from_template("base").run_cmd("echo v2 > /home/user/v").run_cmd(
        "echo the-reason-it-broke >&2; exit 7")
    with pytest.raises(BuildException) as failed:
        Template.build(bad, name, on_build_logs=on_logs)
    assert "exited with code 7" in str(failed.value)
    assert any("the-reason-it-broke" in m for m in seen), seen
    with Sandbox.create(name) as sbx:  # still the first build
        assert sbx.files.read("/home/user/v") == "v1\n"


def test_tags_and_create_by_name_and_tag(names):
    name = _name()
    names.append(name)
    Template.build(Template().from_template("base").run_cmd("echo one > /home/user/v"), f"{name}:v1")
    Template.build(Template().from_template("base").run_cmd("echo two > /home/user/v"), name, tags=["v2"])
    assert {t.tag for t in Template.get_tags(name)} == {"v1", "default", "v2"}
    with Sandbox.create(f"{name}:v1") as sbx:
        assert sbx.files.read("/home/user/v") == "one\n"
    with Sandbox.create(f"{name}:v2") as sbx:
        assert sbx.files.read("/home/user/v") == "two\n"
    with Sandbox.create(name) as sbx:
        assert sbx.files.read("/home/user/v") == "two\n"
    Template.assign_tags(f"{name}:v1", "stable")
    with Sandbox.create(f"{name}:stable") as sbx:
        assert sbx.files.read("/home/user/v") == "one\n"
    assert Template.exists(name) and not Template.exists(_name("missing"))


def test_the_templates_cpu_and_memory_are_its_sandboxes(names):
    name = _name()
    names.append(name)
    Template.build(Template().from_template("base"), name, cpu_count=2, memory_mb=768)
    with Sandbox.create(name) as sbx:
        info = sbx.get_info()
        assert (info.cpu_count, info.memory_mb) == (2, 768)


def test_start_and_ready_command(names):
    name = _name()
    names.append(name)
    tpl = (Template().from_template("base")
           .set_start_cmd("sleep 1; echo started > /tmp/ready-marker; sleep 600", wait_for_file("/tmp/ready-marker")))
    Template.build(tpl, name)
    with Sandbox.create(name) as sbx:
        assert sbx.files.read("/tmp/ready-marker") == "started\n"  # the create waited for it
        assert "sleep 600" in run(sbx, "ps -eo args")[1]


def test_from_a_dockerfile(context, names):
    name = _name()
    names.append(name)
    (context / "Dockerfile").write_text(
        "FROM base\n"
        "ENV MODE=docker\n"
        "COPY app.py /opt/app/\n"
        "WORKDIR /opt/app\n"
        "RUN python3 app.py > out.txt && id -un > builder.txt\n"
        "USER user\n"
        "RUN id -un > /tmp/ignored && echo $MODE > /home/user/mode.txt\n"
        "CMD [\"python3\", \"-m\", \"http.server\", \"8124\"]\n")
    tpl = Template(file_context_path=str(context)).from_dockerfile(str(context / "Dockerfile"))
    Template.build(tpl, name)
    started = time.monotonic()
    with Sandbox.create(name) as sbx:
        assert time.monotonic() - started < 15  # its `sleep 20` ready command is not waited for
        assert sbx.files.read("/opt/app/out.txt") == "hello from app\n"
        assert sbx.files.read("/opt/app/builder.txt") == "root\n"  # Docker's default user
        assert sbx.files.read("/home/user/mode.txt") == "docker\n"
        assert "http.server 8124" in run(sbx, "ps -eo args")[1]  # CMD: the start command


def test_async_build_from_a_snapshot(names):
    async def main():
        sbx = await AsyncSandbox.create()
        try:
            await sbx.files.write("/home/user/from-snapshot.txt", "snap\n")
            snap = await sbx.create_snapshot(name=_name("snap"))
        finally:
            await sbx.kill()
        name = _name()
        names.append(name)
        seen, on_logs = _logs()
        await AsyncTemplate.build(AsyncTemplate().from_template(snap.snapshot_id).run_cmd(
            "cat /home/user/from-snapshot.txt > /home/user/copy.txt"), name, on_build_logs=on_logs)
        child = await AsyncSandbox.create(name)
        try:
            assert await child.files.read("/home/user/copy.txt") == "snap\n"
        finally:
            await child.kill()
            await AsyncSandbox.delete_snapshot(snap.snapshot_id)

    asyncio.run(main())


def test_the_empty_scratch_template_starts_no_sandbox():
    with pytest.raises(Exception) as refused:
        Sandbox.create("scratch")
    assert "cannot start from it" in str(refused.value)


def test_registry_images_are_refused_clearly(names):
    name = _name()
    names.append(name)
    with pytest.raises(BuildException) as failed:
        Template.build(Template().from_image("python:3.12"), name)
    message = str(failed.value)
    assert "cannot pull" in message and "docker save" in message and "debian:" in message


def test_another_team_cannot_see_or_use_it(server, names):
    name = _name()
    names.append(name)
    Template.build(Template().from_template("base").run_cmd("true"), name)
    other = new_team(server)
    try:
        assert not Template.exists(name, api_key=other)
        with pytest.raises(Exception) as refused:
            Sandbox.create(name, api_key=other)
        assert "unknown template" in str(refused.value)  # as any name it does not know
        tags = httpx.get(f"{server.url}/templates/{name}/tags", headers={"X-API-KEY": other})
        assert tags.status_code == 404
        listed = httpx.get(f"{server.url}/templates", headers={"X-API-KEY": other}).json()
        assert all(t["names"] != [name] for t in listed)
        assert httpx.delete(f"{server.url}/templates/{name}", headers={"X-API-KEY": other}).status_code == 404
        # the same name in the other team is its own template
        Template.build(Template().from_template("base").run_cmd("echo mine > /home/user/who"), name, api_key=other)
        with Sandbox.create(name, api_key=other) as sbx:
            assert sbx.files.read("/home/user/who") == "mine\n"
        with Sandbox.create(name) as sbx:
            assert not sbx.files.exists("/home/user/who")
    finally:
        httpx.delete(f"{server.url}/templates/{name}", headers={"X-API-KEY": other})


def test_pip_and_apt_installs_reach_an_offline_build(names):
    name = _name()
    names.append(name)
    seen, on_logs = _logs()
    Template.build(Template().from_template("base").pip_install("tabulate").apt_install("cowsay"), name,
                   on_build_logs=on_logs)
    assert any("the build's sandbox has no network" in m for m in seen), seen
    # (the e2b SDK up to 2.50 asks for internet on every create unless told not to)
    with Sandbox.create(name, allow_internet_access=False) as sbx:
        assert sbx.commands.run("python3 -c 'import tabulate; print(tabulate.__name__)'").stdout == "tabulate\n"
        assert "moo" in sbx.commands.run("/usr/games/cowsay moo").stdout
        # the network the build's fetches had stays on the host: its sandboxes have loopback only
        names = "import socket; print(*(n for _, n in socket.if_nameindex()))"
        assert sbx.commands.run(f"python3 -c '{names}'").stdout.split() == ["lo"]
        code, _, err = run(sbx, "curl -sS -m 3 http://192.0.2.1/")  # TEST-NET-1: never routed anywhere
        assert code == 7 and "after 0 ms" in err, err  # no route: refused at once


@pytest.mark.timeout(1200)  # apt brings npm's 360 Debian packages
def test_npm_install_global_and_local(names):
    name = _name()
    names.append(name)
    tpl = (Template().from_template("base").apt_install("npm", no_install_recommends=True)
           .npm_install("is-number", g=True)
           .set_workdir("/home/user/app").run_cmd("chown user /home/user/app", user="root")
           .npm_install("is-odd"))
    Template.build(tpl, name)
    with Sandbox.create(name) as sbx:
        assert sbx.commands.run("ls /usr/local/lib/node_modules").stdout.split() == ["is-number"]
        out = sbx.commands.run("cd /home/user/app && node -e 'console.log(require(\"is-odd\")(3))'").stdout
        assert out == "true\n"
