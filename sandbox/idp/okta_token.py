"""Okta custom authorization server token endpoint (idp-api.md §A6).

``POST /idp/okta/oauth2/{authServerId}/v1/token``; only the ``default`` server exists. Client
credentials grant with client_secret_basic or client_secret_post, never both (Okta refuses a
Basic header together with any client credential in the body, ``client_id`` included). A
secret authenticates while ACTIVE and once its propagation delay has passed.

Messages marked [C] are documented; the others, and the order of the checks, are [U].
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.idp.errors import NO_STORE, IdpError, idp_endpoint, oauth_error, okta_error
from sandbox.idp.forms import FormProblem, read_basic, read_form
from sandbox.idp.model import ACTIVE, OktaApp
from sandbox.idp.state import IdpState
from sandbox.runtime import runtime_of

__all__ = ["OKTA_TOKEN_TTL", "okta_token_routes"]

OKTA_TOKEN_TTL = 3600
#: [C] invalid_client for a wrong or INACTIVE secret.
BAD_SECRET = "The client secret supplied for a confidential client is invalid."
#: [C] both client_secret_basic and client_secret_post at once.
MULTIPLE = (
    "Cannot supply multiple client credentials. Use one of the following: credentials in the "
    "Authorization header, credentials in the post body, or a client_assertion in the post body."
)


def _refuse(status: int, error: str, description: str) -> IdpError:
    return IdpError(oauth_error(status, error, description))


async def _form(request: Request) -> tuple[dict[str, str], str, str]:
    """The form and the (client_id, client_secret) it authenticates with."""
    try:
        form = await read_form(request)
        basic = read_basic(request)
    except FormProblem as problem:
        if problem.kind == "basic":
            raise _refuse(401, "invalid_client", "Client authentication failed.") from problem
        raise _refuse(400, "invalid_request", problem.detail) from problem
    in_body = [name for name in ("client_id", "client_secret", "client_assertion") if name in form]
    if basic is not None and in_body:
        raise _refuse(400, "invalid_request", MULTIPLE)
    if "client_assertion" in form:
        # These apps use client secrets; JWT client authentication is not modelled [U].
        raise _refuse(401, "invalid_client", "The client_assertion token is invalid.")
    if basic is not None:
        return form, basic.client_id, basic.client_secret
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id and not secret:
        raise _refuse(401, "invalid_client", "No client credentials found.")  # [C]
    if not client_id:
        raise _refuse(400, "invalid_request", "The 'client_id' parameter is required.")
    if not secret:
        raise _refuse(401, "invalid_client", BAD_SECRET)
    return form, client_id, secret


def _authenticate(idp: IdpState, client_id: str, secret: str) -> OktaApp:
    app = idp.okta_app_by_client(client_id)
    if app is None:
        raise _refuse(401, "invalid_client", "Invalid value for 'client_id' parameter.")
    if client_id in idp.faults.reject_token_clients:
        raise _refuse(401, "invalid_client", BAD_SECRET)
    now = time.monotonic()
    if not any(
        s.status == ACTIVE and s.value == secret and s.usable_at <= now for s in app.secrets
    ):
        raise _refuse(401, "invalid_client", BAD_SECRET)
    return app


def _scopes(idp: IdpState, app: OktaApp, form: dict[str, str]) -> list[str]:
    grant = form.get("grant_type", "")
    if not grant:
        raise _refuse(400, "invalid_request", "The token request must specify a 'grant_type'.")
    if grant != "client_credentials":
        raise _refuse(
            400,
            "unsupported_grant_type",
            f"'{grant}' is not a supported grant type. Configured grant types: "
            "[client_credentials].",
        )
    requested = form.get("scope", "").split()
    if not requested:
        raise _refuse(400, "invalid_scope", "No scopes were requested.")  # [C]
    if not set(requested) <= idp.okta_scopes():
        raise _refuse(
            400,
            "invalid_scope",
            "One or more scopes are not configured for the authorization server resource.",
        )
    if not set(requested) <= set(app.scopes):
        raise _refuse(
            400,
            "access_denied",
            "Policy evaluation failed for this request, please check the policy configurations.",
        )
    return requested


@idp_endpoint
async def okta_token(request: Request) -> Response:
    """Issue an opaque access token for a client credentials request."""
    server_id: str = request.path_params["authServerId"]
    if server_id != "default":
        summary = f"Not found: Resource not found: {server_id} (AuthorizationServer)"
        return okta_error(404, "E0000007", summary)
    idp = runtime_of(request).idp
    form, client_id, secret = await _form(request)
    app = _authenticate(idp, client_id, secret)
    scopes = _scopes(idp, app, form)
    ttl = idp.settings.token_ttl_seconds or OKTA_TOKEN_TTL
    token = idp.issue_token("okta", app.client_id, " ".join(scopes), ttl)
    body = {
        "token_type": "Bearer",
        "expires_in": ttl,
        "access_token": token,
        "scope": " ".join(scopes),
    }
    return JSONResponse(body, headers=NO_STORE)


def okta_token_routes() -> list[Route]:
    """The token route relative to ``/idp/okta``."""
    return [Route("/oauth2/{authServerId}/v1/token", okta_token, methods=["POST"])]
