"""sandlot's own SDK (both surfaces) and CLI give sandboxes a network: `create(network=...,
allow_internet_access=..., iam=...)` in E2B's SDK's snake_case keys, `update_network()` on an
instance or by id, `SandboxInfo.network`; `sandlot create --allow-out ...` and `sandlot network
update|show`. Checked from inside, by fetching the test world's servers (conftest.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from network_support import ALLOWED, DNS, OTHER

from sandlot import InvalidArgument, Sandbox
from sdk_support import maybe

ALLOW_LIST = {"allow_out": ["allowed.test"], "deny_out": ["0.0.0.0/0"], "dns_servers": [DNS]}
LINKS = "python3 -c \"import socket; print(' '.join(n for _, n in socket.if_nameindex()))\""


async def _sh(sbx, cmd: str) -> tuple[int, str]:
    r = await maybe(sbx.commands.run(cmd, check=False, timeout=30))
    return r.exit_code, r.stdout + r.stderr


async def fetch(sbx, url: str) -> tuple[int, str]:
    """curl from inside (network_support.fetch through sandlot's SDK): 0 and the world's answer, or
    curl's failure (6 name refused, 7/28 connection refused or dropped)."""
    return await _sh(sbx, f"curl -sS -k --connect-timeout 2 -m 5 {url}")


@pytest.fixture
async def made(sdk):
    """made(**create_kwargs): sandboxes of the surface under test, killed at the end."""
    cls, conn = sdk
    created = []

    async def make(**kwargs):
        sbx = await maybe(cls.create(timeout=120, **kwargs, **conn))
        created.append(sbx)
        return sbx

    yield make
    for sbx in created:
        await maybe(sbx.kill())
        await maybe(sbx.close())


async def test_an_allow_list_reaches_only_its_names(world, made):
    secret = f"s-{uuid.uuid4().hex}"
    rules = {"allowed.test": [{"transform": {"headers": {"X-Secret": secret}}}]}
    sbx = await made(network={**ALLOW_LIST, "rules": rules})
    path = f"/sdk-{uuid.uuid4().hex}"
    assert await fetch(sbx, f"http://allowed.test{path}") == (0, f"world {ALLOWED}\n")
    assert (await fetch(sbx, "http://other.test/"))[0] != 0
    assert (await fetch(sbx, f"http://{OTHER}/"))[0] != 0
    (seen,) = [r for r in world.requests() if r["path"] == path]
    assert seen["headers"]["X-Secret"] == secret  # the rule arrived, converted to the wire's shape
    info = await maybe(sbx.get_info())
    assert info.allow_internet_access is False
    assert info.network == {**ALLOW_LIST, "rules": {"allowed.test": [
        {"transform": {"headers": {"X-Secret": "<redacted>"}}}]}}


async def test_no_network_unless_asked(world, made):
    sbx = await made()
    assert (await fetch(sbx, f"http://{ALLOWED}/"))[0] != 0
    # only loopback once its pool sandbox's unused link (down, unaddressed) is gone (test_egress.py)
    waited = f"for i in $(seq 50); do [ \"$({LINKS})\" = lo ] && break; sleep 0.1; done; {LINKS}"
    assert (await _sh(sbx, waited))[1].split() == ["lo"]
    info = await maybe(sbx.get_info())
    assert (info.allow_internet_access, info.network) == (False, {})


async def test_internet_access_and_ingress_settings(world, made):
    sbx = await made(allow_internet_access=True, network={"dns_servers": [DNS], "allow_public_traffic": False,
                                                         "bandwidth_mbps": 50})
    assert await fetch(sbx, "http://other.test/") == (0, f"world {OTHER}\n")
    info = await maybe(sbx.get_info())
    assert info.allow_internet_access is True and info.network["allow_public_traffic"] is False


async def test_update_network_changes_it_live(world, sdk, made):
    cls, conn = sdk
    sbx = await made()
    assert await maybe(sbx.update_network(ALLOW_LIST)) is None
    assert await fetch(sbx, "http://allowed.test/") == (0, f"world {ALLOWED}\n")
    assert (await fetch(sbx, "http://other.test/"))[0] != 0
    assert (await maybe(sbx.get_info())).network == ALLOW_LIST
    # the flag as an argument (E2B's SDK has it inside `network`, also taken)
    await maybe(sbx.update_network({"dns_servers": [DNS]}, allow_internet_access=True))
    assert await fetch(sbx, "http://other.test/") == (0, f"world {OTHER}\n")
    # by id, on the class: {} clears it all
    await maybe(cls.update_network(sbx.sandbox_id, {}, **conn))
    assert (await _sh(sbx, LINKS))[1].split() == ["lo"]
    assert (await fetch(sbx, "http://allowed.test/"))[0] != 0
    assert (await maybe(sbx.get_info())).network == {}


async def test_bad_input_is_refused(world, sdk, made):
    cls, conn = sdk
    nowhere = {**conn, "api_url": "http://127.0.0.1:9"}  # caught before any request: no server there
    for network, word in (({"allowOut": ["allowed.test"]}, "did you mean 'allow_out'"),
                          ({"allow_outs": []}, "'allow_outs'"),
                          ({"allow_out": "allowed.test"}, "list of str"),
                          ({"egress_proxy": {"address": "h:1", "user": "x"}}, "'user'"),
                          ({"deny_out": lambda ctx: [ctx.all_traffic]}, "callables")):
        with pytest.raises(InvalidArgument, match=word):
            await maybe(cls.create(network=network, **nowhere))
    with pytest.raises(InvalidArgument, match="'token_type'"):
        await maybe(cls.create(iam={"tokens": {"aws": {"audience": "x", "tokenType": "JWT-SVID"}}}, **nowhere))
    # what only the server can judge: its 400
    with pytest.raises(InvalidArgument, match="not an IPv4 address"):
        await maybe(cls.create(network={"allow_out": ["allowed.test"], "dns_servers": ["resolver.test"]}, **conn))
    sbx = await made()
    with pytest.raises(InvalidArgument, match="'allowOut'"):
        await maybe(sbx.update_network({"allowOut": ["allowed.test"]}))
    with pytest.raises(InvalidArgument, match="update key .allow_public_traffic."):  # create-only
        await maybe(sbx.update_network({"allow_public_traffic": False}))
    with pytest.raises(InvalidArgument, match="not an IPv4 address"):
        await maybe(sbx.update_network({"allow_out": ["allowed.test"], "dns_servers": ["resolver.test"]}))
    with pytest.raises(InvalidArgument, match="twice"):
        await maybe(sbx.update_network({"allow_internet_access": False}, allow_internet_access=True))


async def test_iam_tokens_reach_rule_headers(world, made):
    header = {"Authorization": "Bearer ${e2b.identity.tokens.aws}"}
    sbx = await made(network={**ALLOW_LIST, "rules": {"allowed.test": [{"transform": {"headers": header}}]}},
                     iam={"tokens": {"aws": {"audience": "sts.test", "token_type": "JWT-SVID"}}})
    path = f"/iam-{uuid.uuid4().hex}"
    assert (await fetch(sbx, f"http://allowed.test{path}"))[0] == 0
    (seen,) = [r for r in world.requests() if r["path"] == path]
    scheme, token = seen["headers"]["Authorization"].split()
    assert scheme == "Bearer" and token.count(".") == 2  # a JWT, signed by the server


# ---- the CLI ----

def _connect(server, sandbox_id: str) -> Sandbox:
    return Sandbox.connect(sandbox_id, api_url=server.url, api_key=server.api_key)


def _fetch(sbx: Sandbox, url: str) -> tuple[int, str]:
    r = sbx.commands.run(f"curl -sS -k --connect-timeout 2 -m 5 {url}", check=False, timeout=30)
    return r.exit_code, r.stdout + r.stderr


def test_cli_create_and_network_update(world, cli, server, tmp_path):
    created = cli("create", "--timeout", "120", "--allow-out", "allowed.test", "--deny-out", "0.0.0.0/0",
                  "--dns-server", DNS)
    assert created.exit_code == 0, created.output
    sid = created.stdout.strip()
    sbx = _connect(server, sid)
    try:
        assert _fetch(sbx, "http://allowed.test/") == (0, f"world {ALLOWED}\n")
        assert _fetch(sbx, "http://other.test/")[0] != 0
        shown = cli("network", "show", sid)
        assert json.loads(shown.stdout) == {"allow_internet_access": False, **ALLOW_LIST}
        # the file's keys under the flags: --allow-out replaces its allow_out
        spec = tmp_path / "network.json"
        spec.write_text(json.dumps({**ALLOW_LIST, "rules": {"other.test": [
            {"transform": {"headers": {"X-Team": "blue"}}}]}}))
        updated = cli("network", "update", sid, "--network-json", str(spec), "--allow-out", "other.test")
        assert (updated.exit_code, updated.stdout) == (0, f"updated {sid}\n"), updated.output
        assert _fetch(sbx, "http://other.test/") == (0, f"world {OTHER}\n")
        assert _fetch(sbx, "http://allowed.test/")[0] != 0
        assert cli("network", "update", sid, "--internet", "--dns-server", DNS).exit_code == 0
        assert _fetch(sbx, "http://allowed.test/") == (0, f"world {ALLOWED}\n")
        assert cli("network", "update", sid).exit_code == 0  # no option: no network
        assert _fetch(sbx, "http://other.test/")[0] != 0
        spec.write_text(json.dumps({"allowOut": ["allowed.test"]}))
        bad = cli("network", "update", sid, "--network-json", str(spec))
        assert bad.exit_code == 1 and "did you mean 'allow_out'" in bad.stderr, bad.output
    finally:
        sbx.kill()


def test_cli_create_without_network_options_has_none(world, cli, server):
    created = cli("create", "--timeout", "60", "--json")
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    assert (info["allow_internet_access"], info["network"]) == (False, {})
    sbx = _connect(server, info["sandbox_id"])
    try:
        assert _fetch(sbx, f"http://{ALLOWED}/")[0] != 0
        private = cli("create", "--timeout", "60", "--private", "--internet", "--dns-server", DNS, "--json")
        assert private.exit_code == 0, private.output
        info = json.loads(private.stdout)
        Sandbox.kill(info["sandbox_id"], api_url=server.url, api_key=server.api_key)
        assert info["allow_internet_access"] is True
        assert info["network"] == {"allow_public_traffic": False, "allow_out": [], "deny_out": [], "dns_servers": [DNS]}
    finally:
        sbx.kill()
