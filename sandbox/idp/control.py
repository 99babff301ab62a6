"""``/_sandbox/idp/...`` control endpoints (no auth): IdP settings, faults, hold, inspection.

For tests, the demo and benchmarks; they bypass the IdPs' own rules on purpose. Secret values
never appear here except the management credentials and a secret made by ``POST apps``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.idp.model import load_certificate
from sandbox.idp.settings import IdpFaults, IdpSettings
from sandbox.idp.state import IdpState
from sandbox.runtime import runtime_of

__all__ = ["base_url_of", "idp_control_routes"]


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def base_url_of(request: Request) -> str:
    """The sandbox's own URL: the one it listens on if known, else as this client called it."""
    known = runtime_of(request).base_url
    return known or f"{request.url.scheme}://{request.url.netloc}"


async def settings(request: Request) -> Response:
    """GET the IdP settings; PUT replaces them; PATCH merges into them."""
    idp = runtime_of(request).idp
    if request.method != "GET":
        try:
            data = await _body(request)
            idp.settings = (
                IdpSettings.from_dict(data)
                if request.method == "PUT"
                else idp.settings.merged(data)
            )
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
    return JSONResponse(idp.settings.to_dict())


async def faults(request: Request) -> Response:
    """GET the IdP faults; PUT replaces them; PATCH merges into them."""
    idp = runtime_of(request).idp
    if request.method != "GET":
        try:
            data = await _body(request)
            idp.faults = (
                IdpFaults.from_dict(data) if request.method == "PUT" else idp.faults.merged(data)
            )
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
    return JSONResponse(idp.faults.to_dict())


async def hold(request: Request) -> Response:
    """GET the hold; POST ``{timeout_seconds?}`` sets it (management creates wait)."""
    state = runtime_of(request).idp.hold
    if request.method == "POST":
        try:
            data = await _body(request)
            unknown = sorted(set(data) - {"timeout_seconds"})
            if unknown:
                raise ValueError(f"unknown hold setting(s): {', '.join(unknown)}")
            state.set(data.get("timeout_seconds", 60.0))
        except ValueError as exc:
            return _bad(str(exc))
    return JSONResponse(state.view())


async def release(request: Request) -> Response:
    """POST: lift the hold; every waiting create goes on. Returns how many were waiting."""
    state = runtime_of(request).idp.hold
    released = state.release()
    return JSONResponse({**state.view(), "released": released})


def _create_okta(idp: IdpState, data: dict[str, Any], label: str) -> dict[str, Any]:
    scopes = data.get("scopes", ["redox.deliver"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise ValueError("scopes must be a list of strings")
    client_id = data.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise ValueError("client_id must be a non-empty string")
    if client_id is not None and idp.okta_app_by_client(client_id) is not None:
        raise ValueError("client_id is taken")
    okta = idp.create_okta_app(label, client_id=client_id, scopes=scopes)
    made: dict[str, Any] = {"idp": "okta", "app_id": okta.id, "client_id": okta.client_id}
    if data.get("secret", True):
        secret = idp.add_okta_secret(okta, delay=0)
        made |= {"secret_id": secret.id, "client_secret": secret.value}
    return made


def _create_entra(idp: IdpState, data: dict[str, Any], label: str) -> dict[str, Any]:
    owners = data.get("owners")
    if owners is not None and not (
        isinstance(owners, list) and all(isinstance(o, str) for o in owners)
    ):
        raise ValueError("owners must be a list of appIds")
    entra = idp.create_entra_app(label, owners=None if owners is None else set(owners))
    made: dict[str, Any] = {
        "idp": "entra",
        "app_id": entra.app_id,
        "object_id": entra.id,
        "client_id": entra.app_id,
    }
    if data.get("secret", True):
        password = idp.add_password(entra, "initial", delay=0)
        made |= {"secret_id": password.key_id, "client_secret": password.value}
    return made


async def apps(request: Request) -> Response:
    """GET every app with secret ids, statuses, times (no values); POST ``{idp, label?,
    client_id?, scopes?, owners?, secret?}`` creates an app (with one active secret unless
    ``secret`` is false) and returns its ids and that secret's value."""
    idp = runtime_of(request).idp
    if request.method == "GET":
        return JSONResponse(idp.apps_view())
    try:
        data = await _body(request)
        unknown = sorted(set(data) - {"idp", "label", "client_id", "scopes", "secret", "owners"})
        if unknown:
            raise ValueError(f"unknown app setting(s): {', '.join(unknown)}")
        if not isinstance(data.get("secret", True), bool):
            raise ValueError("secret must be a boolean")
        label = str(data.get("label", "sandbox-app"))
        if data.get("idp") == "okta":
            made = _create_okta(idp, data, label)
        elif data.get("idp") == "entra":
            made = _create_entra(idp, data, label)
        else:
            raise ValueError("idp must be okta or entra")
    except ValueError as exc:
        return _bad(str(exc))
    return JSONResponse(made, status_code=201)


async def secret_status(request: Request) -> Response:
    """POST ``{client_id, client_secret}``: is it a secret of that client, active, usable now."""
    idp = runtime_of(request).idp
    try:
        data = await _body(request)
    except ValueError as exc:
        return _bad(str(exc))
    client_id, value = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(value, str):
        return _bad("client_id and client_secret must be strings")
    try:
        return JSONResponse(idp.secret_status(client_id, value))
    except KeyError:
        return _bad(f"no IdP app has client id {client_id}", 404)


async def entra_owners(request: Request) -> Response:
    """PUT ``{"owners": [appId, ...]}``: who owns an Entra application."""
    idp = runtime_of(request).idp
    app = idp.entra_app(request.path_params["appId"])
    if app is None:
        return _bad("unknown appId", 404)
    try:
        data = await _body(request)
    except ValueError as exc:
        return _bad(str(exc))
    owners = data.get("owners")
    if (
        set(data) != {"owners"}
        or not isinstance(owners, list)
        or not all(isinstance(o, str) for o in owners)
    ):
        return _bad('body must be {"owners": [appId, ...]}')
    app.owners = {o.lower() for o in owners}
    return JSONResponse({"app_id": app.app_id, "owners": sorted(app.owners)})


async def entra_management(request: Request) -> Response:
    """PUT ``{roles?: [...], certificate_pem?: str}``: the management client's Graph roles and
    an X.509 certificate it may sign client assertions with."""
    runtime = runtime_of(request)
    idp = runtime.idp
    try:
        data = await _body(request)
        unknown = sorted(set(data) - {"roles", "certificate_pem"})
        if unknown:
            raise ValueError(f"unknown management setting(s): {', '.join(unknown)}")
        roles = data.get("roles")
        if roles is not None:
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValueError("roles must be a list of strings")
            idp.management.roles = set(roles)
        pem = data.get("certificate_pem")
        if pem is not None:
            if not isinstance(pem, str):
                raise ValueError("certificate_pem must be a PEM string")
            cert = load_certificate(pem.encode(), key_id=idp.guid(), display_name="management")
            idp.management.certificates.append(cert)
    except ValueError as exc:
        return _bad(str(exc))
    return JSONResponse(idp.management_credentials(base_url_of(request))["entra"])


async def credentials(request: Request) -> Response:
    """The management credentials: Okta org URL + API token, Entra tenant/client/secret/URLs."""
    idp = runtime_of(request).idp
    return JSONResponse(idp.management_credentials(base_url_of(request)))


def idp_control_routes() -> list[Route]:
    """Routes relative to /_sandbox."""
    return [
        Route("/idp/settings", settings, methods=["GET", "PUT", "PATCH"]),
        Route("/idp/faults", faults, methods=["GET", "PUT", "PATCH"]),
        Route("/idp/hold", hold, methods=["GET", "POST"]),
        Route("/idp/release", release, methods=["POST"]),
        Route("/idp/apps", apps, methods=["GET", "POST"]),
        Route("/idp/secret-status", secret_status, methods=["POST"]),
        Route("/idp/entra/apps/{appId}/owners", entra_owners, methods=["PUT"]),
        Route("/idp/entra/management", entra_management, methods=["PUT"]),
        Route("/idp/credentials", credentials, methods=["GET"]),
    ]
