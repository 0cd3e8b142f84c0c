"""Workload identity (E2B's `iam`, issue 12): a sandbox names tokens at create,
`{"tokens": {name: {"audience": ..., "tokenType": "JWT-SVID"}}}`, and a header rule's value may
carry `${e2b.identity.tokens.<name>}`. The egress proxy replaces it, per request, with a JWT-SVID
this server signs for the sandbox: so code in a sandbox can call a cloud API that trusts this
server as an OIDC identity provider (AWS STS AssumeRoleWithWebIdentity, GCP workload identity
federation, Vault's JWT auth) without a long-lived secret, and never sees the token itself.

The token: ES256, `iss` the server's issuer URL (SANDLOT_IDENTITY_ISSUER, else its own address),
`sub` a SPIFFE ID `spiffe://<issuer host>/team/<team>/sandbox/<id>`, `aud` the token's audience,
`exp` LIFETIME_S after `iat`, and `sandbox_id`, `team`, `template` claims for trust policies. The
verifier's side: GET /.well-known/openid-configuration and /.well-known/jwks.json (public). The key
lives in <home>/identity/key.pem (root only), made at its first use; it is not rotated (replacing
the file and restarting rotates it, invalidating tokens already out).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .._exceptions import InvalidArgument

TOKEN_TYPES = ("JWT-SVID",)  # what E2B's API accepts in this version
MAX_TOKENS = 16
MAX_AUDIENCE = 512
LIFETIME_S = 300  # a minted token's life; one is reused until REUSE_S before its end
REUSE_S = 60
PLACEHOLDER = re.compile(r"\$\{e2b\.identity\.tokens\.([^}]*)\}")
_BAD_NAME = re.compile(r"[{}\x00-\x1f\x7f-\x9f]")  # E2B's SDK refuses these in a name too

# {name: {"audience": str, "tokenType": str}} as a record keeps it
Tokens = dict[str, dict[str, str]]


def parse(iam) -> Tokens:
    """E2B's SandboxIam from a create body; InvalidArgument (400) names what is wrong."""
    if iam is None:
        return {}
    if not isinstance(iam, dict) or set(iam) - {"tokens"}:
        raise InvalidArgument("iam is an object with `tokens`: {name: {audience, tokenType}}")
    tokens = iam.get("tokens") or {}
    if not isinstance(tokens, dict):
        raise InvalidArgument("iam.tokens must be an object of name -> {audience, tokenType}")
    if len(tokens) > MAX_TOKENS:
        raise InvalidArgument(f"iam.tokens: at most {MAX_TOKENS} tokens")
    out: Tokens = {}
    for name, token in tokens.items():
        if not isinstance(name, str) or not name or len(name) > 128 or _BAD_NAME.search(name):
            raise InvalidArgument(f"iam.tokens: {name!r} is not a token name (1-128 characters, no braces or "
                                  "control characters)")
        if not isinstance(token, dict) or set(token) - {"audience", "tokenType"}:
            raise InvalidArgument(f"iam.tokens[{name!r}] is an object with audience and tokenType")
        audience, kind = token.get("audience"), token.get("tokenType")
        if not isinstance(audience, str) or not 1 <= len(audience) <= MAX_AUDIENCE or _BAD_NAME.search(audience):
            raise InvalidArgument(f"iam.tokens[{name!r}].audience must be a string of 1 to {MAX_AUDIENCE} "
                                  "characters without control characters")
        if kind not in TOKEN_TYPES:
            raise InvalidArgument(f"iam.tokens[{name!r}].tokenType must be one of {', '.join(TOKEN_TYPES)}, "
                                  f"got {kind!r}")
        out[name] = {"audience": audience, "tokenType": kind}
    return out


def check_references(rules, tokens: Tokens) -> None:
    """Every placeholder in the rules' header values names a token of the sandbox's (400 if not: a
    typo would otherwise show up as a refusal at the destination)."""
    for host, headers in rules:
        for header, value in headers:
            for name in PLACEHOLDER.findall(value):
                if name not in tokens:
                    known = ", ".join(map(repr, tokens)) or "none"
                    raise InvalidArgument(f"network.rules[{host!r}]: the {header} header names the workload "
                                          f"identity token {name!r}, which the sandbox's iam does not register "
                                          f"(registered: {known})")
            if "${e2b.identity." in PLACEHOLDER.sub("", value):
                raise InvalidArgument(f"network.rules[{host!r}]: the {header} header has an unfinished or "
                                      "unknown placeholder; the form is ${e2b.identity.tokens.<name>}")


class Issuer:
    """Signs the sandboxes' tokens and publishes the key that verifies them."""

    def __init__(self, home: Path, issuer: str):
        self.issuer = issuer.rstrip("/")
        self.trust_domain = urlsplit(self.issuer).hostname or "sandlot"
        self._path = home / "identity" / "key.pem"
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._kid = ""
        self._minted: dict[tuple[str, str], tuple[float, str]] = {}  # (sandbox, audience) -> (exp, token)
        self._lock = threading.Lock()

    def _signing_key(self) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            if self._key is None:
                if self._path.exists():
                    key = serialization.load_pem_private_key(self._path.read_bytes(), None)
                else:
                    key = ec.generate_private_key(ec.SECP256R1())
                    self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    tmp = self._path.with_suffix(".tmp")
                    tmp.write_bytes(b"")
                    tmp.chmod(0o600)
                    tmp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
                    tmp.replace(self._path)
                self._kid, self._key = _thumbprint(key), key
            return self._key

    def jwks(self) -> dict:
        key = self._signing_key()
        return {"keys": [{**_public_jwk(key), "kid": self._kid, "use": "sig", "alg": "ES256"}]}

    def discovery(self) -> dict:
        return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/.well-known/jwks.json",
                "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "sandbox_id", "team", "template"]}

    def subject(self, team: str, sandbox_id: str) -> str:
        return f"spiffe://{self.trust_domain}/team/{team}/sandbox/{sandbox_id}"

    def mint(self, sandbox_id: str, team: str, template: str, audience: str) -> str:
        now = time.time()
        with self._lock:
            found = self._minted.get((sandbox_id, audience))
            if found is not None and found[0] - REUSE_S > now:
                return found[1]
        key = self._signing_key()
        claims = {"iss": self.issuer, "sub": self.subject(team, sandbox_id), "aud": audience,
                  "iat": int(now), "nbf": int(now) - 5, "exp": int(now) + LIFETIME_S, "jti": uuid.uuid4().hex,
                  "sandbox_id": sandbox_id, "team": team, "template": template}
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": self._kid, "typ": "JWT"})
        with self._lock:
            self._minted[(sandbox_id, audience)] = (now + LIFETIME_S, token)
        return token

    def forget(self, sandbox_id: str) -> None:
        with self._lock:
            for k in [k for k in self._minted if k[0] == sandbox_id]:
                del self._minted[k]

    def resolve(self, sandbox_id: str, team: str, template: str, tokens: Tokens, headers):
        """`headers` with every placeholder replaced by a token minted now; ValueError for a name
        the sandbox does not register (the request is not sent: never a half-resolved secret)."""
        if not any("${e2b.identity." in v for _, v in headers):
            return headers

        def token(m: re.Match) -> str:
            spec = tokens.get(m.group(1))
            if spec is None:
                raise ValueError(f"sandbox {sandbox_id}: no workload identity token {m.group(1)!r}")
            return self.mint(sandbox_id, team, template, spec["audience"])

        return tuple((n, PLACEHOLDER.sub(token, v)) for n, v in headers)


def _public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))


def _thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638's thumbprint of the public key: a key id that changes only with the key."""
    jwk = _public_jwk(key)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


async def _discovery(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.identity.discovery())


async def _jwks(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.identity.jwks(), headers={"Cache-Control": "public, max-age=300"})


def routes() -> list[Route]:
    return [Route("/.well-known/openid-configuration", _discovery, methods=["GET"]),
            Route("/.well-known/jwks.json", _jwks, methods=["GET"])]
