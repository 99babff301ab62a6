"""Microsoft Graph application endpoints (idp-api.md §B1-B5), under ``/idp/entra/graph/v1.0``.

Callers need a Graph access token from the fake Entra token endpoint. A caller may read and
change an application it owns, or any application when it holds Application.ReadWrite.All
(else 403 Authorization_RequestDenied; reads of a non-owned application are refused the same
way and lists leave them out [U]). The number of passwords per application is capped by
``IdpSettings.password_limit`` (default 2). removePassword of an unknown keyId answers 404
Request_ResourceNotFound [U: Graph documents no status for it].
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.idp.errors import IdpError, graph_error, idp_endpoint
from sandbox.idp.model import EntraApp, graph_time
from sandbox.idp.state import GRAPH_RESOURCE, IdpState
from sandbox.runtime import runtime_of

__all__ = ["application_view", "graph_routes"]

ALL_APPS_ROLE = "Application.ReadWrite.All"
_FILTER = re.compile(r"^appId eq '([0-9A-Fa-f-]{36})'$")
_PASSWORD_FIELDS = ("displayName", "startDateTime", "endDateTime")


def _bad(message: str, code: str = "Request_BadRequest") -> IdpError:
    return IdpError(graph_error(400, code, message))


def _caller(request: Request) -> tuple[IdpState, EntraApp]:
    """The calling service principal, from a Graph access token."""
    idp = runtime_of(request).idp
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise IdpError(graph_error(401, "InvalidAuthenticationToken", "Access token is empty."))
    issued = idp.valid_token(token.strip())
    if issued is None or issued.idp != "entra":
        message = "Access token validation failure. Invalid or expired token."
        raise IdpError(graph_error(401, "InvalidAuthenticationToken", message))
    if issued.audience != GRAPH_RESOURCE:
        message = "Access token validation failure. Invalid audience."
        raise IdpError(graph_error(401, "InvalidAuthenticationToken", message))
    caller = idp.entra_apps.get(issued.client_id)
    if caller is None:  # the caller's registration was removed since
        raise IdpError(graph_error(401, "InvalidAuthenticationToken", "Invalid client."))
    return idp, caller


def _may_manage(caller: EntraApp, app: EntraApp) -> bool:
    return caller.app_id in app.owners or ALL_APPS_ROLE in caller.roles


def _target(request: Request) -> tuple[IdpState, EntraApp, EntraApp]:
    idp, caller = _caller(request)
    if "appId" in request.path_params:
        key: str = request.path_params["appId"]
        app = idp.entra_apps.get(key.lower())
    else:  # /applications/{id} takes the object id only
        key = request.path_params["id"]
        app = next((a for a in idp.entra_apps.values() if a.id == key.lower()), None)
    if app is None:
        message = (
            f"Resource '{key}' does not exist or one of its queried reference-property objects "
            "are not present."
        )
        raise IdpError(graph_error(404, "Request_ResourceNotFound", message))
    if not _may_manage(caller, app):
        message = "Insufficient privileges to complete the operation."
        raise IdpError(graph_error(403, "Authorization_RequestDenied", message))
    return idp, caller, app


def application_view(app: EntraApp) -> dict[str, Any]:
    """The application as Graph returns it (a subset of its properties)."""
    return {
        "id": app.id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "createdDateTime": graph_time(app.created),
        "deletedDateTime": None,
        "description": None,
        "signInAudience": app.sign_in_audience,
        "identifierUris": [app.identifier_uri],
        "tags": [],
        "passwordCredentials": [p.view() for p in app.passwords],
        "keyCredentials": [c.view() for c in app.certificates],
    }


def _select(request: Request, view: dict[str, Any]) -> dict[str, Any]:
    """Apply ``$select``; an unknown property is a 400, as on Graph."""
    raw = request.query_params.get("$select")
    if raw is None:
        return view
    chosen = [name.strip() for name in raw.split(",") if name.strip()]
    for name in chosen:
        if name not in view:
            message = (
                f"Could not find a property named '{name}' on type 'microsoft.graph.application'."
            )
            raise _bad(message)
    return {name: view[name] for name in chosen}


def _query(request: Request, allowed: tuple[str, ...]) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise _bad(f"Query option '{name}' is not allowed here.")


def _context(request: Request, suffix: str) -> str:
    base = f"{request.url.scheme}://{request.url.netloc}/idp/entra/graph/v1.0"
    return f"{base}/$metadata#{suffix}"


@idp_endpoint
async def get_application(request: Request) -> Response:
    """GET /applications(appId='{appId}') or /applications/{id}; honours ``$select``."""
    _query(request, ("$select",))
    _, _, app = _target(request)
    body: dict[str, Any] = {"@odata.context": _context(request, "applications/$entity")}
    body.update(_select(request, application_view(app)))
    return JSONResponse(body)


@idp_endpoint
async def list_applications(request: Request) -> Response:
    """GET /applications[?$filter=appId eq '{appId}'][&$select=…]: only manageable apps."""
    _query(request, ("$select", "$filter"))
    idp, caller = _caller(request)
    wanted: str | None = None
    raw_filter = request.query_params.get("$filter")
    if raw_filter is not None:
        match = _FILTER.match(raw_filter.strip())
        if match is None:
            raise _bad(f"Unsupported or invalid query filter clause: {raw_filter}", "BadRequest")
        wanted = match.group(1).lower()
    found = [
        _select(request, application_view(app))
        for app in idp.entra_apps.values()
        if (wanted is None or app.app_id == wanted) and _may_manage(caller, app)
    ]
    return JSONResponse({"@odata.context": _context(request, "applications"), "value": found})


async def _json(request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise IdpError(
            graph_error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        )
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise _bad("Unable to read JSON request payload.", "BadRequest") from exc
    if not isinstance(body, dict):
        raise _bad("The request payload must be a JSON object.", "BadRequest")
    return body


def _when(name: str, value: object) -> datetime:
    if not isinstance(value, str):
        raise _bad(
            f"Invalid value specified for property '{name}' of resource 'PasswordCredential'."
        )
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        ) from exc
    if moment.tzinfo is None:
        raise _bad(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        )
    return moment


def _password_request(body: dict[str, Any]) -> dict[str, Any]:
    """``{"passwordCredential": {displayName?, startDateTime?, endDateTime?}}``; other
    properties are refused as Graph refuses unknown properties."""
    for key in body:
        if key != "passwordCredential":
            raise _bad(
                f"Property '{key}' does not exist as a declared property or extension property."
            )
    credential = body.get("passwordCredential", {})
    if not isinstance(credential, dict):
        raise _bad("passwordCredential must be an object.")
    for key in credential:
        if key not in _PASSWORD_FIELDS:
            raise _bad(
                f"Property '{key}' does not exist on type 'microsoft.graph.passwordCredential' "
                "or cannot be set."
            )
    name = credential.get("displayName")
    if name is not None and not isinstance(name, str):
        raise _bad(
            "Invalid value specified for property 'displayName' of resource 'PasswordCredential'."
        )
    start = (
        _when("startDateTime", credential["startDateTime"])
        if "startDateTime" in credential
        else None
    )
    end = _when("endDateTime", credential["endDateTime"]) if "endDateTime" in credential else None
    if start is not None and end is not None and end <= start:
        raise _bad("The endDateTime must be later than the startDateTime.")
    return {"display_name": name, "start": start, "end": end}


@idp_endpoint
async def add_password(request: Request) -> Response:
    """POST …/addPassword: 200 with the passwordCredential, ``secretText`` shown only here."""
    _query(request, ())
    idp, _, app = _target(request)
    wanted = _password_request(await _json(request))
    limit = idp.settings.password_limit
    if len(app.passwords) >= limit:
        message = (
            f"Not allowed to add {len(app.passwords) + 1} passwords. You can only add a "
            f"maximum of {limit} passwords."
        )
        details = [{"target": "passwordCredentials", "code": "TooManyAppPasswords"}]
        raise IdpError(graph_error(400, "TooManyAppPasswords", message, details=details))
    password = idp.add_password(
        app, wanted["display_name"], start=wanted["start"], end=wanted["end"]
    )
    body: dict[str, Any] = {
        "@odata.context": _context(request, "microsoft.graph.passwordCredential")
    }
    body.update(password.view(with_secret=True))
    return JSONResponse(body)


@idp_endpoint
async def remove_password(request: Request) -> Response:
    """POST …/removePassword ``{"keyId": "<guid>"}``: 204; takes effect at once."""
    _query(request, ())
    _, _, app = _target(request)
    body = await _json(request)
    if set(body) != {"keyId"}:
        raise _bad('The request body must be exactly {"keyId": "<guid>"}.')
    key_id = body["keyId"]
    invalid = _bad("Invalid value specified for property 'keyId'.")
    if not isinstance(key_id, str):
        raise invalid
    try:
        uuid.UUID(key_id)
    except ValueError as exc:
        raise invalid from exc
    password = app.password(key_id)
    if password is None:
        message = f"No password credential with keyId '{key_id}' was found on the application."
        raise IdpError(graph_error(404, "Request_ResourceNotFound", message))
    app.passwords.remove(password)
    return Response(status_code=204)


def graph_routes() -> list[Route]:
    """Graph routes relative to ``/idp/entra``."""
    by_app_id = "/graph/v1.0/applications(appId='{appId}')"
    by_id = "/graph/v1.0/applications/{id}"
    return [
        Route("/graph/v1.0/applications", list_applications, methods=["GET"]),
        Route(by_app_id, get_application, methods=["GET"]),
        Route(by_app_id + "/addPassword", add_password, methods=["POST"]),
        Route(by_app_id + "/removePassword", remove_password, methods=["POST"]),
        Route(by_id, get_application, methods=["GET"]),
        Route(by_id + "/addPassword", add_password, methods=["POST"]),
        Route(by_id + "/removePassword", remove_password, methods=["POST"]),
    ]
