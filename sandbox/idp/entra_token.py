"""Entra v2.0 token endpoint, client credentials grant (idp-api.md §B7).

``POST /idp/entra/login/{tenant}/oauth2/v2.0/token`` with ``client_id``, ``scope =
{resource}/.default`` and either a client secret (form field or HTTP Basic) or a certificate
client assertion (``client_assertion_type`` jwt-bearer, RS256 with ``x5t`` or PS256 with
``x5t#S256``, ``aud`` = this token URL, ``iss`` = ``sub`` = client_id). Resources are Graph
(``https://graph.microsoft.com``) and every application's ``api://{appId}``.

AADSTS7000215/7000216/7000222/700016/900144/90002/1002012/500011 follow Microsoft's error code
reference; the HTTP statuses, the assertion failure codes and the order of checks are [U].
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.idp.errors import NO_STORE, IdpError, aad_error, idp_endpoint
from sandbox.idp.forms import FormProblem, read_basic, read_form
from sandbox.idp.model import EntraApp
from sandbox.idp.state import GRAPH_RESOURCE, IdpState
from sandbox.runtime import runtime_of

__all__ = ["ENTRA_TOKEN_TTL", "entra_token_routes"]

ENTRA_TOKEN_TTL = 3599
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Thumbprint header -> EntraCertificate attribute; RS256 or PS256 is accepted with either.
_THUMBPRINTS = {"x5t": "x5t", "x5t#S256": "x5t_s256"}


def _refuse(status: int, error: str, code: int, message: str) -> IdpError:
    return IdpError(aad_error(status, error, code, message))


def _missing(name: str) -> IdpError:
    message = f"The request body must contain the following parameter: '{name}'."
    return _refuse(400, "invalid_request", 900144, message)


def _bad_secret(app_id: str) -> IdpError:
    return _refuse(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        f"client secret value, not the client secret ID, for a secret added to app '{app_id}'.",
    )


def _malformed(detail: str) -> IdpError:
    return _refuse(400, "invalid_request", 9002313, f"Invalid request. {detail}")


async def _read(request: Request) -> tuple[dict[str, str], str | None]:
    """The form, and the secret from a Basic header (its client_id merged into the form)."""
    try:
        form = await read_form(request)
        basic = read_basic(request)
    except FormProblem as problem:
        if problem.kind == "content_type":
            raise _missing("grant_type") from problem  # the body cannot be read at all
        raise _malformed(problem.detail) from problem
    if basic is None:
        return form, None
    if "client_secret" in form or "client_assertion" in form:
        raise _malformed("Client credentials were supplied both in the header and the body.")
    if form.get("client_id", basic.client_id) != basic.client_id:
        raise _malformed("The client_id in the body does not match the Authorization header.")
    form["client_id"] = basic.client_id
    return form, basic.client_secret


def _resource(idp: IdpState, scope: str) -> str:
    """The resource a ``…/.default`` scope names (Graph or an app's ``api://`` URI)."""
    if len(scope.split()) != 1 or not scope.endswith("/.default"):
        raise _refuse(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    resource = scope.removesuffix("/.default")
    if resource.rstrip("/") == GRAPH_RESOURCE:
        return GRAPH_RESOURCE
    if resource.startswith("api://"):
        app = idp.entra_apps.get(resource.removeprefix("api://").lower())
        if app is not None:
            return app.identifier_uri
    raise _refuse(
        400,
        "invalid_resource",
        500011,
        f"The resource principal named {resource} was not found in the tenant named "
        f"{idp.entra_tenant_id}.",
    )


def _check_secret(idp: IdpState, app: EntraApp, secret: str) -> None:
    if app.app_id in idp.faults.reject_token_clients:
        raise _bad_secret(app.app_id)
    now, moment = time.monotonic(), datetime.now(UTC)
    matching = [p for p in app.passwords if p.value == secret]
    if any(p.start <= moment < p.end and p.usable_at <= now for p in matching):
        return
    if matching and all(p.end <= moment for p in matching):
        raise _refuse(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app.app_id}' are expired.",
        )
    raise _bad_secret(app.app_id)  # unknown, not yet valid, or still propagating


def _assertion_failed(code: int, message: str) -> IdpError:
    return _refuse(401, "invalid_client", code, message)


def _check_assertion(idp: IdpState, app: EntraApp, assertion: str, audience: str) -> None:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise _assertion_failed(50027, "JWT token is invalid or malformed.") from exc
    thumbprint = ""
    cert = None
    for name, attr in _THUMBPRINTS.items():
        if isinstance(header.get(name), str):
            thumbprint = header[name]
            cert = next((c for c in app.certificates if getattr(c, attr) == thumbprint), None)
            break
    if cert is None or header.get("alg") not in ("RS256", "PS256"):
        raise _assertion_failed(
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{thumbprint}']",
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            cert.public_key,  # type: ignore[arg-type]
            algorithms=[str(header["alg"])],
            audience=audience,
            leeway=60,
            options={"require": ["aud", "exp", "iss", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _assertion_failed(
            700024, "Client assertion is not within its valid time range."
        ) from exc
    except jwt.InvalidAudienceError as exc:
        raise _assertion_failed(
            700016, f"Client assertion audience claim does not match the token URL {audience}."
        ) from exc
    except jwt.PyJWTError as exc:
        raise _assertion_failed(700027, f"Client assertion failed validation: {exc}.") from exc
    if claims["iss"] != app.app_id or claims["sub"] != app.app_id:
        raise _assertion_failed(
            700021, "Client assertion application identifier doesn't match 'client_id' parameter."
        )
    if app.app_id in idp.faults.reject_token_clients:
        raise _assertion_failed(700027, "Client assertion contains an invalid signature.")


def _token_url(request: Request, tenant: str) -> str:
    return f"{request.url.scheme}://{request.url.netloc}/idp/entra/login/{tenant}/oauth2/v2.0/token"


@idp_endpoint
async def entra_token(request: Request) -> Response:
    """Issue an access token for Graph or for an application's own API."""
    idp = runtime_of(request).idp
    tenant: str = request.path_params["tenant"]
    if tenant.lower() != idp.entra_tenant_id:
        raise _refuse(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
    form, basic_secret = await _read(request)
    grant = form.get("grant_type", "")
    if not grant:
        raise _missing("grant_type")
    if grant != "client_credentials":
        raise _refuse(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )
    client_id = form.get("client_id", "")
    if not client_id:
        raise _missing("client_id")
    scope = form.get("scope", "")
    if not scope:
        raise _missing("scope")
    app = idp.entra_apps.get(client_id.lower())
    if app is None:
        raise _refuse(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{idp.entra_tenant_id}'.",
        )
    resource = _resource(idp, scope)
    secret = basic_secret if basic_secret is not None else form.get("client_secret")
    assertion = form.get("client_assertion")
    if secret and assertion:
        raise _malformed("Only one of client_secret and client_assertion may be sent.")
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _refuse(
                400, "invalid_request", 50027, "client_assertion_type must be " + ASSERTION_TYPE
            )
        _check_assertion(idp, app, assertion, _token_url(request, tenant))
    elif secret:
        _check_secret(idp, app, secret)
    else:
        raise _refuse(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the "
            "'client_credentials' grant type.",
        )
    ttl = idp.settings.token_ttl_seconds or ENTRA_TOKEN_TTL
    token = idp.issue_token("entra", app.app_id, resource, ttl)
    body = {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token}
    return JSONResponse(body, headers=NO_STORE)


def entra_token_routes() -> list[Route]:
    """The token route relative to ``/idp/entra``."""
    return [Route("/login/{tenant}/oauth2/v2.0/token", entra_token, methods=["POST"])]
