"""Okta management API for client secrets (idp-api.md §A1-A4), under ``/idp/okta/api/v1``.

``Authorization: SSWS <api token>`` is required; a ``Bearer`` token is refused with 401
E0000011 because this fake does not implement OAuth for Okta. Every rule documented in §A3 is
enforced: two secret objects per app at most, an ACTIVE secret cannot be deleted, the only
ACTIVE secret cannot be deactivated. Unconfirmed choices are marked [U].
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.idp.errors import IdpError, idp_endpoint, okta_error
from sandbox.idp.model import ACTIVE, INACTIVE, OktaApp, OktaSecret, okta_time
from sandbox.idp.state import IdpState
from sandbox.runtime import runtime_of

__all__ = ["okta_org_url", "okta_routes", "secret_view"]

VALIDATION = "Api validation failed: OAuth2ClientSecretMediated"
MAX_SECRETS = 2
TOO_MANY = "You've reached the maximum number of client secrets per client."
DELETE_ACTIVE = (
    "You can't delete an active client secret. Deactivate the secret before deleting it."
)
ONLY_ACTIVE = "You can't deactivate the only active client secret."


def okta_org_url(request: Request) -> str:
    """``http://host:port/idp/okta`` as this client addressed the sandbox."""
    return f"{request.url.scheme}://{request.url.netloc}/idp/okta"


def _idp(request: Request) -> IdpState:
    return runtime_of(request).idp


def _authorize(request: Request) -> IdpState:
    idp = _idp(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme != "SSWS" or token.strip() not in idp.okta_api_tokens:
        raise IdpError(okta_error(401, "E0000011", "Invalid token provided"))
    return idp


def _not_found(resource_id: str, kind: str) -> IdpError:
    summary = f"Not found: Resource not found: {resource_id} ({kind})"
    return IdpError(okta_error(404, "E0000007", summary))


def _app(request: Request) -> OktaApp:
    app_id: str = request.path_params["appId"]
    app = _authorize(request).okta_apps.get(app_id)
    if app is None:
        raise _not_found(app_id, "AppInstance")
    return app


def _secret(request: Request) -> tuple[OktaApp, OktaSecret]:
    app = _app(request)
    secret_id: str = request.path_params["secretId"]
    secret = app.secret(secret_id)
    if secret is None:
        raise _not_found(secret_id, "OAuth2ClientSecretMediated")
    return app, secret


def _invalid(cause: str, summary: str = VALIDATION) -> IdpError:
    return IdpError(okta_error(400, "E0000001", summary, [cause]))


def secret_view(
    org_url: str, app: OktaApp, secret: OktaSecret, *, plaintext: bool = False
) -> dict[str, Any]:
    """The Secret object (§A2); ``client_secret`` in full only when ``plaintext``."""
    base = f"{org_url}/api/v1/apps/{app.id}/credentials/secrets/{secret.id}"
    links: dict[str, Any]
    if secret.status == ACTIVE:
        links = {
            "deactivate": {"href": f"{base}/lifecycle/deactivate", "hints": {"allow": ["POST"]}}
        }
    else:
        links = {
            "activate": {"href": f"{base}/lifecycle/activate", "hints": {"allow": ["POST"]}},
            "delete": {"href": base, "hints": {"allow": ["DELETE"]}},
        }
    return {
        "id": secret.id,
        "status": secret.status,
        "client_secret": secret.value if plaintext else secret.masked,
        "secret_hash": secret.secret_hash,
        "created": secret.created,
        "lastUpdated": secret.last_updated,
        "_links": links,
    }


async def _create_body(request: Request) -> dict[str, Any]:
    """The create body: a JSON object with only ``client_secret`` and ``status`` [U: Okta's
    handling of other keys, of a missing body and of other content types is undocumented;
    all refused here with E0000003 / E0000001]."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    malformed = IdpError(okta_error(400, "E0000003", "The request body was not well-formed."))
    if media != "application/json":
        raise malformed
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise malformed from exc
    if not isinstance(body, dict):
        raise malformed
    for key in body:
        if key not in ("client_secret", "status"):
            raise _invalid(f"{key}: Property is not recognized.")
    status = body.get("status", ACTIVE)
    if status not in (ACTIVE, INACTIVE):
        raise _invalid("status: Status must be ACTIVE or INACTIVE.")
    if "client_secret" in body:
        _check_supplied(body["client_secret"])
    return body


def _check_supplied(value: object) -> None:
    summary = "Api validation failed: client_secret"
    if not isinstance(value, str):
        raise _invalid("client_secret: 'client_secret' must be a string.", summary)
    if len(value) < 14:
        raise _invalid(
            "client_secret: 'client_secret' must be at least '14' characters long.", summary
        )
    if len(value) > 100:
        raise _invalid(
            "client_secret: 'client_secret' must be at most '100' characters long.", summary
        )
    if not all(" " <= ch <= "~" for ch in value):
        raise _invalid("client_secret: 'client_secret' must contain printable ASCII only.", summary)


@idp_endpoint
async def list_secrets(request: Request) -> Response:
    """GET /api/v1/apps/{appId}/credentials/secrets: every secret, values masked."""
    app = _app(request)
    org = okta_org_url(request)
    return JSONResponse([secret_view(org, app, s) for s in app.secrets])


@idp_endpoint
async def create_secret(request: Request) -> Response:
    """POST …/secrets: 201 with the plaintext value (the only time it is shown)."""
    app = _app(request)
    body = await _create_body(request)
    if len(app.secrets) >= MAX_SECRETS:
        raise _invalid(TOO_MANY)
    secret = _idp(request).add_okta_secret(
        app, value=body.get("client_secret"), status=body.get("status", ACTIVE)
    )
    view = secret_view(okta_org_url(request), app, secret, plaintext=True)
    return JSONResponse(view, status_code=201)


@idp_endpoint
async def get_secret(request: Request) -> Response:
    """GET …/secrets/{secretId}: value masked."""
    app, secret = _secret(request)
    return JSONResponse(secret_view(okta_org_url(request), app, secret))


def _set_status(secret: OktaSecret, status: str) -> None:
    if secret.status != status:
        secret.status = status
        secret.last_updated = okta_time(datetime.now(UTC))


@idp_endpoint
async def activate_secret(request: Request) -> Response:
    """POST …/lifecycle/activate: 200 (also when already ACTIVE [U])."""
    app, secret = _secret(request)
    _set_status(secret, ACTIVE)
    return JSONResponse(secret_view(okta_org_url(request), app, secret))


@idp_endpoint
async def deactivate_secret(request: Request) -> Response:
    """POST …/lifecycle/deactivate: refused for the only ACTIVE secret; takes effect at once."""
    app, secret = _secret(request)
    if secret.status == ACTIVE and len(app.active_secrets()) == 1:
        raise _invalid(ONLY_ACTIVE)
    _set_status(secret, INACTIVE)
    return JSONResponse(secret_view(okta_org_url(request), app, secret))


@idp_endpoint
async def delete_secret(request: Request) -> Response:
    """DELETE …/secrets/{secretId}: INACTIVE only; 204."""
    app, secret = _secret(request)
    if secret.status == ACTIVE:
        raise _invalid(DELETE_ACTIVE)
    app.secrets.remove(secret)
    return Response(status_code=204)


def okta_routes() -> list[Route]:
    """Management routes relative to ``/idp/okta`` (the token route lives in okta_token)."""
    base = "/api/v1/apps/{appId}/credentials/secrets"
    one = base + "/{secretId}"
    return [
        Route(base, list_secrets, methods=["GET"]),
        Route(base, create_secret, methods=["POST"]),
        Route(one, get_secret, methods=["GET"]),
        Route(one, delete_secret, methods=["DELETE"]),
        Route(one + "/lifecycle/activate", activate_secret, methods=["POST"]),
        Route(one + "/lifecycle/deactivate", deactivate_secret, methods=["POST"]),
    ]
