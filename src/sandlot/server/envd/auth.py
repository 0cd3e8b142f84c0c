"""Who may call envd, and as which sandbox user (docs/e2b.md §3.11, §3.12).

Policies take the sandbox's access token and the request and raise AuthenticationError; the gate in
routing.py applies them. A sandbox without a token admits everyone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable

from starlette.requests import HTTPConnection

from ..._exceptions import AuthenticationError, InvalidArgument

# Exact wording of envd's answers; clients compare the bodies.
UNAUTHORIZED = "unauthorized access, please provide a valid access token or method signing if supported"
SIGNATURE_EXPIRED = "signature is already expired"
ACCESS_TOKEN_HEADER = "x-access-token"
_EXPIRATION = re.compile(r"[0-9]{1,20}")

Policy = Callable[[str, HTTPConnection], None]
"""Checks a request against a sandbox's access token; raises AuthenticationError."""


def allow_all(token: str, request: HTTPConnection) -> None:
    """/health answers everyone: `is_running()` must work without credentials."""


def require_token(token: str, request: HTTPConnection) -> None:
    given = request.headers.get(ACCESS_TOKEN_HEADER)
    if given is None or not _same(given, token):
        raise AuthenticationError(UNAUTHORIZED)


TRAFFIC_TOKEN_HEADER = "e2b-traffic-access-token"


def require_token_or_traffic_token(token: str, request: HTTPConnection) -> None:
    """The code interpreter's routes: the SDK sends X-Access-Token on /execute only, and the
    traffic token (which sandlot hands out equal to the access token) on every call."""
    given = request.headers.get(ACCESS_TOKEN_HEADER) or request.headers.get(TRAFFIC_TOKEN_HEADER)
    if given is None or not _same(given, token):
        raise AuthenticationError(UNAUTHORIZED)


def require_token_or_signature(token: str, request: HTTPConnection) -> None:
    """/files: the header if present must match; otherwise the URL must carry a valid signature."""
    if ACCESS_TOKEN_HEADER in request.headers:
        return require_token(token, request)
    query = request.query_params
    signature = query.get("signature")
    if not signature:
        raise AuthenticationError(UNAUTHORIZED)
    expiration = query.get("signature_expiration") or None
    # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits, which int() refuses;
    # 20 digits hold any unix time, and int() refuses strings past 4300 digits
    if expiration is not None and not _EXPIRATION.fullmatch(expiration):
        raise AuthenticationError("invalid signature expiration")
    operation = "read" if request.scope["method"] in ("GET", "HEAD") else "write"
    expected = sign(query.get("path", ""), operation, query.get("username", ""), token, expiration)
    if not _same(signature, expected):
        raise AuthenticationError("invalid signature")
    if expiration is not None and int(expiration) < time.time():
        raise AuthenticationError(SIGNATURE_EXPIRED)


def sign(path: str, operation: str, user: str, token: str, expiration: int | str | None = None) -> str:
    """The v1 file URL signature of e2b's `sandbox/signature.py` (path exactly as given)."""
    raw = f"{path}:{operation}:{user}:{token}"
    if expiration is not None:
        raw += f":{expiration}"
    digest = hashlib.sha256(raw.encode()).digest()
    return "v1_" + base64.b64encode(digest).rstrip(b"=").decode()


def basic_user(authorization: str | None) -> str | None:
    """The user of an `Authorization: Basic base64("<user>:")` header; None when absent or empty."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidArgument("the Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("the Authorization header is not valid base64") from None
    return decoded.partition(":")[0] or None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
