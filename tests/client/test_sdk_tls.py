"""The SDK and a server with TLS (`--tls local-ca`): `ca_file=` (or $SANDLOT_CA_FILE) makes it
verify the server against that CA, for the control plane (httpx) and envd's RPC (pyqwest) alike;
without it a clear error says the certificate is not trusted. Verification is never turned off."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import pytest
from mcp_gateway_support import client, custom
from sdk_support import maybe

from sandlot import InvalidArgument, Sandbox, SandlotError
from sandlot.client import _http
from sandlot.server.certs import LocalCA
from support import leftovers, start_tls_server, tracebacks


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    srv = start_tls_server(tmp_path_factory.mktemp("sdk-tls") / "home")
    yield srv
    srv.stop()
    assert not leftovers(srv.home)
    assert not tracebacks(srv.log.read_text(errors="replace"))


@pytest.fixture
def no_ca_env(monkeypatch):
    monkeypatch.delenv("SANDLOT_CA_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


async def test_ca_file_verifies_the_server(tls_server, surface, no_ca_env):
    from sandlot import AsyncSandbox

    cls = Sandbox if surface == "sync" else AsyncSandbox
    conn = {"api_url": tls_server.url, "api_key": tls_server.api_key, "ca_file": tls_server.ca}
    sbx = await maybe(cls.create(**conn))
    try:
        await maybe(sbx.files.write("tls.txt", "over https"))                         # httpx
        result = await maybe(sbx.commands.run("cat tls.txt"))                         # Connect RPC (pyqwest)
        assert result.stdout == "over https"
        assert sbx.sandbox_id in [i.sandbox_id for i in await maybe(sbx.list(**conn).next_items())]
        assert (await maybe(cls.get_info(sbx.sandbox_id, **conn))).sandbox_id == sbx.sandbox_id  # by id
        again = await maybe(cls.connect(sbx.sandbox_id, **conn))
        assert (await maybe(again.commands.run("echo again"))).stdout == "again\n"
        await maybe(again.close())
    finally:
        await maybe(sbx.kill())
        await maybe(sbx.close())
    # one TLS context per CA file, per process
    assert _http._tls(str(tls_server.ca)) is _http._tls(str(tls_server.ca)) is not _http._tls(None)


async def test_the_mcp_gateway_over_tls(tls_server, no_ca_env):
    """get_mcp_url() is https on the server's domain, whose certificate the CA vouches for."""
    from sandlot import AsyncSandbox

    sbx = await AsyncSandbox.create(mcp={"github/example/text": custom("text")}, api_url=tls_server.url,
                                    api_key=tls_server.api_key, ca_file=tls_server.ca)
    try:
        url = sbx.get_mcp_url()
        assert url == f"https://50005-{sbx.sandbox_id}.{tls_server.domain}/mcp"
        async with client(url, await sbx.get_mcp_token(), verify=ssl.create_default_context(cafile=tls_server.ca)) \
                as mcp:
            assert (await mcp.call_tool("upper", {"text": "tls"})).content[0].text == "TLS"
    finally:
        await sbx.kill()
        await sbx.close()


def test_every_entry_point_takes_ca_file(tls_server, no_ca_env):
    from sandlot import Codebase, SandboxService, Template, Volume

    conn = {"api_url": tls_server.url, "api_key": tls_server.api_key, "ca_file": tls_server.ca}
    assert isinstance(Template.list(**conn), list) and isinstance(Volume.list(**conn), list)
    assert isinstance(Codebase.list(**conn), list) and isinstance(Sandbox.list_snapshots(**conn), list)
    service = SandboxService(**conn, namespace="tls")
    sbx = service.get_or_create("s1")
    try:
        assert sbx.commands.run("echo service").stdout == "service\n"
    finally:
        service.release_all()
        service.stop()


def test_the_environment_names_the_ca(tls_server, no_ca_env, monkeypatch):
    monkeypatch.setenv("SANDLOT_CA_FILE", str(tls_server.ca))
    with Sandbox.create(api_url=tls_server.url, api_key=tls_server.api_key) as sbx:
        assert sbx.commands.run("echo env").stdout == "env\n"


def test_without_the_ca_a_clear_error(tls_server, no_ca_env):
    with pytest.raises(SandlotError) as e:
        Sandbox.create(api_url=tls_server.url, api_key=tls_server.api_key)
    assert "TLS certificate is not trusted (self-signed certificate in certificate chain)" in e.value.message
    assert "pass ca_file= or set $SANDLOT_CA_FILE" in e.value.message
    assert not e.value.details.get("lost")


def test_a_bad_ca_file_is_bad_input(tls_server, no_ca_env, tmp_path):
    conn = {"api_url": tls_server.url, "api_key": tls_server.api_key}
    with pytest.raises(InvalidArgument, match="is not a file"):
        Sandbox.create(**conn, ca_file=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(InvalidArgument, match="junk.pem: no PEM certificate in it"):
        Sandbox.create(**conn, ca_file=tmp_path / "junk.pem")
    # another CA does not stand for this server's
    other = LocalCA(tmp_path / "other-ca").cert_path
    with pytest.raises(SandlotError, match="TLS certificate is not trusted"):
        Sandbox.list(**conn, ca_file=other).next_items()


def test_the_audit_command_verifies_a_tls_server_with_the_sdks_ca_setting(tls_server):
    """`sandlot audit` talks to the server itself (httpx): $SANDLOT_CA_FILE is trusted there too."""
    env = {k: v for k, v in os.environ.items() if k not in ("SANDLOT_CA_FILE", "SSL_CERT_FILE")}
    env.update(SANDLOT_API_URL=tls_server.url, SANDLOT_API_KEY=tls_server.api_key)
    cli = [os.path.join(os.path.dirname(sys.executable), "sandlot"), "audit", "--json", "--limit", "5"]
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "certificate" in refused.stderr.lower(), refused.stderr
    trusted = subprocess.run(cli, env={**env, "SANDLOT_CA_FILE": str(tls_server.ca)}, capture_output=True, text=True,
                             timeout=60)
    assert trusted.returncode == 0, trusted.stderr
    assert isinstance(json.loads(trusted.stdout), list)
