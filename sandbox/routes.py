"""Platform API routes under /platform (redox-api.md §2-4). The bearer check runs before them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.replies import ApiError, envelope, envelope_with_list, error_response
from sandbox.runtime import runtime_of
from sandbox.state import Credential, Destination
from sandbox.validation import (
    STRATEGIES,
    validate_credential_fields,
    validate_destination_patch,
)

__all__ = ["platform_routes"]

Handler = Callable[[Request], Awaitable[Response]]


def _api(handler: Handler) -> Handler:
    """Turn ApiError into the platform error body."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 415 for another content type, 400 for invalid JSON."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "Content-Type must be application/json")
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "Request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return body


def _destination(request: Request) -> Destination:
    dest = runtime_of(request).state.destinations.get(request.path_params["destinationId"])
    if dest is None:
        raise ApiError(404, "Destination not found")
    return dest


def _credential(request: Request) -> Credential:
    cred = runtime_of(request).state.credentials.get(request.path_params["credentialId"])
    if cred is None:
        raise ApiError(404, "Auth credential not found")
    return cred


def _environment_id(request: Request) -> str:
    env_id: str = request.path_params["environmentId"]
    if env_id not in runtime_of(request).state.environments:
        raise ApiError(404, "Environment not found")
    return env_id


@_api
async def list_environments(request: Request) -> Response:
    """GET /v1/organizations/{orgId}/environments."""
    state = runtime_of(request).state
    if request.path_params["orgId"] != str(state.config.organization_id):
        raise ApiError(404, "Organization not found")
    return envelope(
        {"environments": [state.environment_view(e) for e in state.environments.values()]}
    )


@_api
async def list_destinations(request: Request) -> Response:
    """GET /v1/environments/{environmentId}/destinations."""
    state = runtime_of(request).state
    env_id = _environment_id(request)
    found = [
        state.destination_view(d) for d in state.destinations.values() if d.environment_id == env_id
    ]
    return envelope({"destinations": found})


@_api
async def get_destination(request: Request) -> Response:
    """GET /v1/destinations/{destinationId}."""
    return envelope(
        {"destination": runtime_of(request).state.destination_view(_destination(request))}
    )


@_api
async def patch_destination(request: Request) -> Response:
    """PATCH /v1/destinations/{destinationId}: name, authCredential, endpoint, verificationToken."""
    state = runtime_of(request).state
    dest = _destination(request)
    body = await _json_object(request)
    values = validate_destination_patch(body, https_only=state.https_only(dest.environment_id))
    if "authCredential" in values:
        cred = state.credentials.get(values["authCredential"])
        # Redox's status for this is undocumented; 422 chosen (well-formed but unusable reference).
        if cred is None or cred.environment_id != dest.environment_id:
            raise ApiError(
                422, "authCredential must be an auth credential of the destination's environment"
            )
        dest.auth_credential = cred.id
    dest.name = values.get("name", dest.name)
    dest.endpoint = values.get("endpoint", dest.endpoint)
    dest.verification_token = values.get("verificationToken", dest.verification_token)
    return envelope({"destination": state.destination_view(dest)})


@_api
async def list_credentials(request: Request) -> Response:
    """GET /v1/environments/{environmentId}/authcredentials."""
    state = runtime_of(request).state
    env_id = _environment_id(request)
    return envelope_with_list("credentials", state.environment_credentials_json(env_id))


@_api
async def list_strategies(request: Request) -> Response:
    """GET /v1/authcredentials/strategies."""
    return envelope(
        {"strategies": {k: {"availableFields": list(v)} for k, v in STRATEGIES.items()}}
    )


@_api
async def get_credential(request: Request) -> Response:
    """GET /v1/authcredentials/{id}."""
    return envelope({"credential": runtime_of(request).state.credential_view(_credential(request))})


@_api
async def create_credential(request: Request) -> Response:
    """POST /v1/authcredentials; duplicate names are allowed, as on Redox."""
    state = runtime_of(request).state
    body = await _json_object(request)
    _check_organization(body, state.config.organization_id)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "name is required and must be a non-empty string")
    env_id = body.get("environmentId")
    if not isinstance(env_id, str) or not env_id:
        raise ApiError(400, "environmentId is required and must be a string")
    if env_id not in state.environments:
        raise ApiError(400, f"environmentId {env_id} is not an environment of this organization")
    strategy = _strategy(body.get("authStrategy"), required=True)
    values = validate_credential_fields(
        body, strategy=strategy, https_only=state.https_only(env_id)
    )
    cred = state.create_credential(
        environment_id=env_id, name=name, strategy=strategy, values=values
    )
    return envelope({"credential": state.credential_view(cred)}, status=201)


@_api
async def patch_credential(request: Request) -> Response:
    """PATCH /v1/authcredentials/{id}; omitted secrets keep their stored value."""
    state = runtime_of(request).state
    cred = _credential(request)
    body = await _json_object(request)
    _check_organization(body, state.config.organization_id)
    if "environmentId" in body and body["environmentId"] != cred.environment_id:
        raise ApiError(400, "environmentId cannot be changed")
    if "authStrategy" in body and _strategy(body["authStrategy"]) != cred.auth_strategy:
        raise ApiError(400, "authStrategy cannot be changed")
    name = body.get("name", cred.name)
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "name must be a non-empty string")
    values = validate_credential_fields(
        body, strategy=cred.auth_strategy, https_only=state.https_only(cred.environment_id)
    )
    cred.rename(name)
    cred.apply(values)
    return envelope({"credential": state.credential_view(cred)})


@_api
async def delete_credential(request: Request) -> Response:
    """DELETE /v1/authcredentials/{id}; refused while a destination uses it."""
    state = runtime_of(request).state
    cred = _credential(request)
    users = state.users_of(cred.id)
    if users:
        # Redox's status for "in use" is undocumented; 409 chosen.
        raise ApiError(
            409, f"Auth credential id [{cred.id}] is in use by {len(users)} destination(s)"
        )
    state.delete_credential(cred.id)
    message = f"Auth credential id [{cred.id}] was successfully deleted."
    # Documented quirk: "meta" is a plain string in this response.
    return JSONResponse({"meta": "1.0.0", "payload": {"message": message}})


def _check_organization(body: dict[str, Any], organization_id: int) -> None:
    if "organization" not in body:
        return
    value = body["organization"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "organization must be a number")
    if value != organization_id:
        raise ApiError(400, "organization does not match the caller's organization")


def _strategy(value: object, *, required: bool = False) -> str:
    if value is None and required:
        raise ApiError(400, "authStrategy is required")
    if not isinstance(value, str) or value not in STRATEGIES:
        raise ApiError(400, f"authStrategy must be one of {', '.join(STRATEGIES)}")
    return value


def platform_routes() -> list[Route]:
    """Routes relative to /platform; order matters (strategies before {credentialId})."""
    return [
        Route("/v1/organizations/{orgId}/environments", list_environments, methods=["GET"]),
        Route("/v1/environments/{environmentId}/destinations", list_destinations, methods=["GET"]),
        Route(
            "/v1/environments/{environmentId}/authcredentials", list_credentials, methods=["GET"]
        ),
        Route("/v1/destinations/{destinationId}", get_destination, methods=["GET"]),
        Route("/v1/destinations/{destinationId}", patch_destination, methods=["PATCH"]),
        Route("/v1/authcredentials/strategies", list_strategies, methods=["GET"]),
        Route("/v1/authcredentials", create_credential, methods=["POST"]),
        Route("/v1/authcredentials/{credentialId}", get_credential, methods=["GET"]),
        Route("/v1/authcredentials/{credentialId}", patch_credential, methods=["PATCH"]),
        Route("/v1/authcredentials/{credentialId}", delete_credential, methods=["DELETE"]),
    ]
