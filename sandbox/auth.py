"""POST /v2/auth/token (JWT client assertion, redox-api.md §1) and the bearer-token check."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.runtime import SandboxRuntime, runtime_of

__all__ = ["bearer_ok", "token_endpoint"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_AGE_SECONDS = 300
SKEW_SECONDS = 10
KEY_NOT_FOUND = "Public key not found, check client_id, kid and Redox dashboard settings"


class _RefusedError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _bad_request(description: str) -> _RefusedError:
    return _RefusedError(400, "invalid_request", description)


def _bad_client(description: str = "") -> _RefusedError:
    return _RefusedError(401, "invalid_client", description)


async def token_endpoint(request: Request) -> Response:
    """Exchange a signed client assertion for a short-lived bearer token."""
    runtime = runtime_of(request)
    try:
        form = await _read_form(request)
        assertion = _check_form(form)
        _verify_assertion(runtime, assertion, audience=_audience(request))
    except _RefusedError as refused:
        return JSONResponse(
            {"error": refused.error, "error_description": refused.description, "error_uri": ""},
            status_code=refused.status,
            headers={"Cache-Control": "no-store"},
        )
    return JSONResponse(_issue(runtime), headers={"Cache-Control": "no-store"})


async def _read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _bad_request("x-www-form-urlencoded content-type required")
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _check_form(form: dict[str, str]) -> str:
    if not form.get("grant_type"):
        raise _bad_request("Missing grant_type parameter")
    if form["grant_type"] != "client_credentials":
        raise _RefusedError(400, "unsupported_grant_type", "")
    if not form.get("client_assertion_type"):
        raise _bad_request("Missing client assertion type")
    if form["client_assertion_type"] != ASSERTION_TYPE:
        raise _bad_request("Invalid client assertion type")
    if not form.get("client_assertion"):
        raise _bad_request("Missing client assertion")
    return form["client_assertion"]


def _audience(request: Request) -> str:
    """The token URL exactly as this client addressed it."""
    return f"{request.url.scheme}://{request.url.netloc}/v2/auth/token"


def _verify_assertion(runtime: SandboxRuntime, assertion: str, *, audience: str) -> None:
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _bad_client() from exc
    if not header.get("kid"):
        raise _bad_request("JWT header kid property is required")
    if (
        runtime.public_key_pem is None
        or header["kid"] != runtime.key_id
        or unverified.get("iss") != runtime.client_id
    ):
        raise _bad_client(KEY_NOT_FOUND)
    if header.get("alg") not in ALGORITHMS:
        raise _bad_client()
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            runtime.public_key_pem,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=runtime.client_id,
            leeway=SKEW_SECONDS,
            options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
        )
    except jwt.PyJWTError as exc:  # signature, aud, exp, iat in the future, missing claim
        raise _bad_client() from exc
    _check_claims(runtime, claims)


def _check_claims(runtime: SandboxRuntime, claims: dict[str, Any]) -> None:
    now = time.time()
    iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
    if claims["sub"] != claims["iss"]:
        raise _bad_client()
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise _bad_client()
    if iat < now - MAX_AGE_SECONDS - SKEW_SECONDS:
        raise _bad_client()
    if exp - iat > MAX_AGE_SECONDS + SKEW_SECONDS:
        raise _bad_client()
    if not isinstance(jti, str) or not jti:
        raise _bad_client()
    seen = runtime.state.seen_jtis
    for old, until in list(seen.items()):
        if until < now:
            del seen[old]
    if jti in seen:
        raise _bad_client()
    seen[jti] = float(exp) + SKEW_SECONDS


def _issue(runtime: SandboxRuntime) -> dict[str, Any]:
    state = runtime.state
    now = time.time()
    for old, until in list(state.tokens.items()):
        if until <= now:
            del state.tokens[old]
    token = secrets.token_urlsafe(32)
    ttl = runtime.config.token_ttl_seconds
    state.tokens[token] = now + ttl
    state.tokens_issued += 1
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": "platform_access",
    }


def bearer_ok(runtime: SandboxRuntime, authorization: str | None) -> bool:
    """True when ``Authorization`` carries a token this sandbox issued and not yet expired."""
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    until = runtime.state.tokens.get(token.strip())
    return until is not None and until > time.time()
