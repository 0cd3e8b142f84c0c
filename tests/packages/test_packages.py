"""`sandbox.packages`: wheels fetched on the host, installed offline in a sandbox that has no network.

Packages used are small, pure Python and absent from the `base` template: tabulate and six.
"""

from __future__ import annotations

import asyncio
import textwrap

import httpx
import pytest
from package_support import python
from sdk_support import maybe

from sandlot import (
    AsyncSandbox,
    InvalidArgument,
    NotFound,
    Package,
    SandboxNotRunning,
    TimeoutError,
)

# 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed anywhere; without a network the connect fails at once
NO_NETWORK = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=3)"


async def names(sandbox) -> dict[str, str]:
    return {p.name.lower(): p.version for p in await maybe(sandbox.packages.list())}


async def test_install_import_uninstall_without_network(sandbox):
    offline = await python(sandbox, NO_NETWORK)
    assert offline.exit_code != 0 and "unreachable" in offline.stderr.lower(), offline.stderr
    assert (await python(sandbox, "import tabulate")).exit_code != 0
    assert not await maybe(sandbox.packages.is_installed("tabulate"))

    installed = await maybe(sandbox.packages.install("tabulate"))
    assert [p.name.lower() for p in installed] == ["tabulate"] and all(isinstance(p, Package) for p in installed)
    version = installed[0].version

    # system-wide: the default user and root both import it
    for user in (None, "root"):
        ran = await python(sandbox, "import tabulate; print(tabulate.__version__)", user=user)
        assert ran.exit_code == 0 and ran.stdout.strip() == version, ran.stderr
    assert await maybe(sandbox.packages.is_installed("tabulate"))
    assert await maybe(sandbox.packages.is_installed("Tabulate"))  # PEP 503 names
    assert (await names(sandbox))["tabulate"] == version
    # the wheels' directory is gone, and the sandbox is still offline
    tmp = await maybe(sandbox.commands.run("ls -A /tmp", user="root"))
    assert ".sandlot-wheels" not in tmp.stdout
    assert (await python(sandbox, NO_NETWORK)).exit_code != 0

    again = await maybe(sandbox.packages.install("tabulate"))
    assert again == []  # already satisfied: nothing new

    removed = await maybe(sandbox.packages.uninstall("tabulate"))
    assert removed == [Package(installed[0].name, version)]
    assert (await python(sandbox, "import tabulate")).exit_code != 0
    assert not await maybe(sandbox.packages.is_installed("tabulate"))
    assert await maybe(sandbox.packages.uninstall(["tabulate"])) == []  # not installed: skipped


async def test_a_running_context_imports_what_is_installed_after_it_started(sdk):
    cls, conn = sdk
    sbx = await maybe(cls.create(template="code-interpreter", **conn))
    try:
        ctx = await maybe(sbx.create_code_context())
        for context in (ctx, None):  # a new context, and the default one (started with the sandbox)
            missing = await maybe(sbx.run_code("import tabulate", context=context))
            assert missing.error is not None and missing.error.name == "ModuleNotFoundError", missing.error
        [installed] = await maybe(sbx.packages.install("tabulate"))
        for context in (ctx, None):
            execution = await maybe(sbx.run_code(
                "import tabulate\ntabulate.__version__, tabulate.tabulate([[1, 2]], tablefmt='plain')",
                context=context))
            assert execution.error is None, execution.error
            assert execution.text == repr((installed.version, "1  2")), execution.text
    finally:
        await maybe(sbx.kill())
        await maybe(sbx.close())


async def test_version_pin_and_upgrade(sandbox):
    installed = await maybe(sandbox.packages.install("six", version="1.16.0"))
    assert installed == [Package("six", "1.16.0")]
    ran = await python(sandbox, "import six; print(six.__version__)")
    assert ran.stdout.strip() == "1.16.0"
    assert await maybe(sandbox.packages.install("six")) == []  # 1.16.0 satisfies "six"

    upgraded = await maybe(sandbox.packages.install("six", upgrade=True))
    assert [p.name for p in upgraded] == ["six"] and upgraded[0].version != "1.16.0"
    assert (await names(sandbox))["six"] == upgraded[0].version

    downgraded = await maybe(sandbox.packages.install_many(["six==1.16.0", "tabulate"]))
    changed = {p.name.lower(): p.version for p in downgraded}
    assert set(changed) == {"six", "tabulate"} and changed["six"] == "1.16.0"


async def test_unknown_package_fails_and_changes_nothing(sandbox):
    before = await maybe(sandbox.packages.list())
    with pytest.raises(InvalidArgument) as e:
        await maybe(sandbox.packages.install_many(["six", "sandlot-no-such-package-xyz"]))
    assert "No matching distribution" in e.value.message and "sandlot-no-such-package-xyz" in e.value.message
    assert await maybe(sandbox.packages.list()) == before


async def test_version_conflicts_fail_clearly(sandbox):
    before = await maybe(sandbox.packages.list())
    with pytest.raises(InvalidArgument) as e:
        await maybe(sandbox.packages.install("six", version="0.0.1"))
    assert "No matching distribution found for six==0.0.1" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        await maybe(sandbox.packages.install_many(["six==1.16.0", "six==1.17.0"]))
    assert "conflict" in e.value.message.lower() or "ResolutionImpossible" in e.value.message
    assert await maybe(sandbox.packages.list()) == before


async def test_a_failed_install_inside_the_sandbox_is_undone(sandbox):
    """The host fetches the wheels fine; pip fails inside, after it has already replaced a package.
    python-dateutil (pure Python) depends on six, which pip installs first; a file where dateutil's
    package directory goes then makes pip fail (as a full or read-only disk would)."""
    await maybe(sandbox.packages.install("six", version="1.16.0"))
    before = await maybe(sandbox.packages.list())
    site = (await python(sandbox, "import site; print(site.getsitepackages()[0])", user="root")).stdout.strip()
    await maybe(sandbox.commands.run(f"touch {site}/dateutil", user="root"))
    with pytest.raises(InvalidArgument) as e:
        await maybe(sandbox.packages.install_many(["six==1.17.0", "python-dateutil"]))
    assert "Could not install packages" in e.value.message and "dateutil" in e.value.message, e.value.message
    # six is back at 1.16.0, python-dateutil is not there: the sandbox's packages are as they were
    assert await maybe(sandbox.packages.list()) == before
    ran = await python(sandbox, "import six; print(six.__version__)")
    assert ran.stdout.strip() == "1.16.0", ran.stderr
    assert not await maybe(sandbox.packages.is_installed("python-dateutil"))
    assert ".sandlot-wheels" not in (await maybe(sandbox.commands.run("ls -A /tmp", user="root"))).stdout
    # with the obstacle gone, the same install works
    await maybe(sandbox.commands.run(f"rm {site}/dateutil", user="root"))
    changed = {p.name.lower(): p.version for p in await maybe(sandbox.packages.install_many(
        ["six==1.17.0", "python-dateutil"]))}
    assert changed["six"] == "1.17.0" and "python-dateutil" in changed
    assert (await python(sandbox, "import dateutil.parser")).exit_code == 0


@pytest.mark.parametrize("spec", ["-r /etc/passwd", "pkg @ file:///etc/passwd", "--index-url=http://127.0.0.1:9/",
                                  "/etc/passwd", "./local-dir", "six --hash=sha256:00", ""])
async def test_urls_paths_and_options_are_refused(sandbox, spec):
    with pytest.raises(InvalidArgument) as e:
        await maybe(sandbox.packages.install(spec))
    # our validation answered, not pip
    assert "pip options are not allowed" in e.value.message or "not allowed" in e.value.message \
        or "not a package requirement" in e.value.message


async def test_install_requirements_from_a_file_in_the_sandbox(sandbox):
    text = "# what the app needs\ntabulate  # tables\n\nsix==1.16.0 \\\n  ; python_version >= '3'\n"
    await maybe(sandbox.files.write("/home/user/requirements.txt", text))
    installed = await maybe(sandbox.packages.install_requirements("/home/user/requirements.txt"))
    assert {(p.name.lower(), p.version) for p in installed} >= {("six", "1.16.0")}
    assert {p.name.lower() for p in installed} == {"six", "tabulate"}
    ran = await python(sandbox, "import six, tabulate; print(six.__version__)")
    assert ran.stdout.strip() == "1.16.0", ran.stderr

    await maybe(sandbox.files.write("/home/user/bad.txt", "tabulate\n-r /etc/passwd\n"))
    with pytest.raises(InvalidArgument, match="pip options are not allowed"):
        await maybe(sandbox.packages.install_requirements("bad.txt"))  # relative: the user's home
    await maybe(sandbox.files.write("/home/user/url.txt", "pkg @ file:///etc/passwd\n"))
    with pytest.raises(InvalidArgument, match="URLs are not allowed"):
        await maybe(sandbox.packages.install_requirements("url.txt"))
    await maybe(sandbox.files.write("/home/user/empty.txt", "# nothing\n"))
    with pytest.raises(InvalidArgument, match="lists no packages"):
        await maybe(sandbox.packages.install_requirements("empty.txt"))
    with pytest.raises(NotFound):
        await maybe(sandbox.packages.install_requirements("/home/user/missing.txt"))
    await maybe(sandbox.commands.run("head -c 1100000 /dev/zero | tr '\\0' a > /home/user/big.txt"))
    with pytest.raises(InvalidArgument, match="larger than"):
        await maybe(sandbox.packages.install_requirements("big.txt"))


async def test_concurrent_installs_on_one_sandbox(server):
    async with await AsyncSandbox.create(api_url=server.url, api_key=server.api_key) as sbx:
        results = await asyncio.gather(sbx.packages.install("tabulate"), sbx.packages.install("six"))
        assert {p.name.lower() for r in results for p in r} == {"tabulate", "six"}
        ran = await sbx.commands.run("python3 -c 'import six, tabulate'", check=False)
        assert ran.exit_code == 0, ran.stderr


async def test_rest_errors(server):
    headers = {"X-API-KEY": server.api_key}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
        assert (await http.get("/sandboxes/nosuchsandbox/packages")).status_code == 404
        r = await http.post("/sandboxes/nosuchsandbox/packages", json={"packages": ["six"]})
        assert r.status_code == 404 and "not found" in r.json()["message"]
        assert (await http.get("/sandboxes/x/packages", headers={"X-API-KEY": "wrong"})).status_code == 401

        created = await http.post("/sandboxes", json={"templateID": "base"})
        sid = created.json()["sandboxID"]
        try:
            url = f"/sandboxes/{sid}/packages"
            for body in ({}, {"packages": "six"}, {"packages": [1]}, {"packages": []},
                         {"packages": ["six"], "requirements": "/r.txt"}, {"requirements": ""}, [1]):
                r = await http.post(url, json=body)
                assert r.status_code == 400, (body, r.text)
                assert r.json()["code"] == 400 and r.json()["message"]
            assert (await http.post(url, content=b"{not json")).status_code == 400
            for body in ({}, {"packages": ["six==1.0"]}, {"packages": ["--all"]}, {"packages": []}):
                r = await http.post(url + "/uninstall", json=body)
                assert r.status_code == 400, (body, r.text)
            listed = await http.get(url)
            assert listed.status_code == 200
            assert all(set(p) == {"name", "version"} for p in listed.json()) and listed.json()
            assert any(p["name"] == "pip" for p in listed.json())

            assert (await http.post(f"/sandboxes/{sid}/pause")).status_code == 204
            r = await http.get(url)
            assert r.status_code == 502 and "paused" in r.json()["message"]
        finally:
            await http.delete(f"/sandboxes/{sid}")


async def test_paused_sandbox_raises_not_running(server):
    sbx = await AsyncSandbox.create(api_url=server.url, api_key=server.api_key)
    try:
        await sbx.pause()
        with pytest.raises(SandboxNotRunning):
            await sbx.packages.list()
    finally:
        await sbx.kill()
        await sbx.close()


async def test_docstring_example_runs(server):
    from sandlot.client import AsyncPackages

    code = "\n".join(line[8:] for line in AsyncPackages.__doc__.split("\n\n")[1].splitlines())
    async with await AsyncSandbox.create(api_url=server.url, api_key=server.api_key) as sandbox:
        exec(compile("async def example(sandbox):\n" + textwrap.indent(code, "    "), "<example>", "exec"),
             namespace := {})
        await namespace["example"](sandbox)
        assert not await sandbox.packages.is_installed("six")


async def test_an_install_finishes_when_its_caller_leaves(server):
    async with await AsyncSandbox.create(api_url=server.url, api_key=server.api_key) as sbx:
        with pytest.raises(TimeoutError):
            await sbx.packages.install("tabulate", timeout=0.5)
        # the install goes on in the server; the next operation on the sandbox waits for it
        assert await sbx.packages.is_installed("tabulate")
        assert ".sandlot-wheels" not in (await sbx.commands.run("ls -A /tmp", user="root")).stdout
