"""E2B's workload identity (`iam`, issue 12): a sandbox registers named tokens at create, a header
rule carries `${e2b.identity.tokens.<name>}`, and the egress proxy replaces it per request with a
JWT-SVID the server signs (server/identity.py). What a verifier (a cloud's STS) does is done here:
fetch the server's OIDC discovery and JWKS without a key, verify the token the world's server saw."""

from __future__ import annotations

import uuid

import httpx
import jwt
import pytest
from e2b import SandboxException, Secret
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import fetch, network, sh

AUDIENCE = "sts.amazonaws.com"
IAM = {"tokens": {"aws": Secret.iam_token(audience=AUDIENCE, token_type="JWT-SVID")}}


def _rules(name: str = "aws") -> dict:
    return {"allowed.test": [{"transform": lambda ctx: {"headers": {"Authorization": f"Bearer {ctx.iam.tokens[name]}",
                                                                    "X-Static": "kept"}}}]}


def _seen(world, path: str) -> list[dict]:
    return [r for r in world.requests() if r["path"] == path]


def _verify(server, token: str) -> dict:
    """As a verifier would: discovery, then its JWKS, both public; the token checked against them."""
    discovery = httpx.get(f"{server.url}/.well-known/openid-configuration").json()
    jwks = httpx.get(discovery["jwks_uri"].replace(discovery["issuer"], server.url)).json()
    (key,) = jwt.PyJWKSet.from_dict(jwks).keys
    assert jwt.get_unverified_header(token)["kid"] == key.key_id
    return jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=discovery["issuer"])


def test_a_rule_carries_a_token_the_server_signs(world, server, make_sandbox):
    sbx = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC], rules=_rules()), iam=IAM)
    path = f"/iam-{uuid.uuid4().hex}"
    for i in range(2):
        assert fetch(sbx, f"http://allowed.test{path}/{i}")[0] == 0
    tokens = []
    for i in range(2):
        (seen,) = _seen(world, f"{path}/{i}")
        scheme, token = seen["headers"]["Authorization"].split()
        assert scheme == "Bearer" and seen["headers"]["X-Static"] == "kept"
        tokens.append(token)
    claims = _verify(server, tokens[0])
    assert claims["sub"].startswith("spiffe://") and claims["sub"].endswith(f"/sandbox/{sbx.sandbox_id}")
    assert claims["sandbox_id"] == sbx.sandbox_id and claims["template"] == "base"
    assert claims["exp"] - claims["iat"] == 300
    # the token never enters the sandbox, nor getInfo
    assert tokens[0].split(".")[2] not in sh(sbx, "env; cat /proc/1/environ", user="root")[1]
    assert tokens[0] not in str(sbx.get_info())
    # another sandbox's token names that sandbox: one cannot act as another
    other = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC], rules=_rules()), iam=IAM)
    assert fetch(other, f"http://allowed.test{path}/other")[0] == 0
    (seen,) = _seen(world, f"{path}/other")
    assert _verify(server, seen["headers"]["Authorization"].split()[1])["sandbox_id"] == other.sandbox_id


def test_a_forged_or_foreign_token_does_not_verify(server):
    """The JWKS verifies only what the server's key signed (a forger copies its key id)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    kid = httpx.get(f"{server.url}/.well-known/jwks.json").json()["keys"][0]["kid"]
    forged = jwt.encode({"sub": "spiffe://x/sandbox/y", "aud": AUDIENCE, "exp": 2 ** 31 - 1},
                        ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid})
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(server, forged)


def test_placeholders_must_name_registered_tokens(api, make_sandbox):
    body = {"templateID": "base", "network": {"allowOut": ["allowed.test"], "denyOut": [ALL_TRAFFIC], "rules": {
        "allowed.test": [{"transform": {"headers": {"Authorization": "Bearer ${e2b.identity.tokens.gcp}"}}}]}}}
    r = api.post("/sandboxes", json={**body, "iam": {"tokens": {"aws": {"audience": AUDIENCE, "tokenType": "JWT-SVID"}}}})
    assert r.status_code == 400 and "'gcp'" in r.json()["message"], r.text
    r = api.post("/sandboxes", json=body)  # no iam at all
    assert r.status_code == 400 and "'gcp'" in r.json()["message"], r.text
    for iam, word in (({"tokens": {"aws": {"audience": AUDIENCE, "tokenType": "PEM"}}}, "tokenType"),
                      ({"tokens": {"a}b": {"audience": AUDIENCE, "tokenType": "JWT-SVID"}}}, "token name"),
                      ({"tokens": {"aws": {"audience": "", "tokenType": "JWT-SVID"}}}, "audience"),
                      ({"tokens": ["aws"]}, "iam.tokens")):
        r = api.post("/sandboxes", json={"templateID": "base", "iam": iam})
        assert r.status_code == 400 and word in r.json()["message"], r.text
    # a live update is checked against the sandbox's own tokens (its body carries no iam)
    sbx = make_sandbox(network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]), iam=IAM)
    with pytest.raises(SandboxException, match="400: .*gcp"):
        sbx.update_network({"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "rules": _rules("gcp")})
    sbx.update_network({"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC], "rules": _rules("aws")})
