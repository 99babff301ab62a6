"""The ``/_sandbox`` control endpoints (no auth): faults, rate limit, journal, state, seeding.

IdP controls live in :mod:`sandbox.idp.control`, delivery controls in
:mod:`sandbox.delivery_control`.

For tests, the demo and benchmarks only; they bypass the Platform API's rules on purpose.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.config import ENVIRONMENT_FLAGS, FaultConfig
from sandbox.idp.control import base_url_of
from sandbox.runtime import runtime_of
from sandbox.seeding import seed_destinations

__all__ = ["control_routes"]


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


async def faults(request: Request) -> Response:
    """GET the fault config; PUT replaces it; PATCH merges into it."""
    runtime = runtime_of(request)
    if request.method != "GET":
        try:
            data = await _body(request)
            if request.method == "PUT":
                runtime.faults = FaultConfig.from_dict(data)
            else:
                runtime.faults = runtime.faults.merged(data)
        except ValueError as exc:
            return _bad(str(exc))
    return JSONResponse(runtime.faults.to_dict())


async def ratelimit(request: Request) -> Response:
    """GET or PUT ``{requests, window_seconds, send_retry_after}`` (requests null = off)."""
    runtime = runtime_of(request)
    if request.method == "PUT":
        try:
            data = await _body(request)
        except ValueError as exc:
            return _bad(str(exc))
        unknown = sorted(set(data) - {"requests", "window_seconds", "send_retry_after"})
        requests = data.get("requests")
        window = data.get("window_seconds", runtime.limiter.window_seconds)
        retry_after = data.get("send_retry_after", False)
        if unknown:
            return _bad(f"unknown rate limit setting(s): {', '.join(unknown)}")
        if requests is not None and (not isinstance(requests, int) or requests <= 0):
            return _bad("requests must be a positive integer or null")
        if not isinstance(window, int | float) or window <= 0:
            return _bad("window_seconds must be a positive number")
        if not isinstance(retry_after, bool):
            return _bad("send_retry_after must be a boolean")
        runtime.set_rate_limit(requests, float(window), send_retry_after=retry_after)
    return JSONResponse(runtime.limiter.settings())


async def journal(request: Request) -> Response:
    """GET entries (``?since=<index>``) with summary counts; DELETE clears the journal."""
    runtime = runtime_of(request)
    if request.method == "DELETE":
        runtime.journal.clear()
        return JSONResponse({"cleared": True})
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        return _bad("since must be an integer")
    return JSONResponse(runtime.journal.view(since))


async def state(request: Request) -> Response:
    """Environments, destinations, credentials (no secrets) and tokens issued."""
    return JSONResponse(runtime_of(request).state.snapshot())


async def secret_values(request: Request) -> Response:
    """Test-only: every secret value, for leak scans.

    Keyed by credential id (its secret fields), destination id (``verificationToken``), and
    ``idp:client-secrets`` (every IdP client secret ever issued, by secret id / keyId),
    ``idp:okta-api-tokens``, ``idp:entra-management`` and ``idp:access-tokens``.
    """
    runtime = runtime_of(request)
    return JSONResponse({**runtime.state.secret_values(), **runtime.idp.secret_values()})


_SEED_KEYS = {"count", "environment_flag", "environment_id", "idp", "shared", "deliveries"}


async def seed(request: Request) -> Response:
    """POST ``{count, environment_flag?, idp?: "okta"|"entra", shared?, deliveries?}``.

    Replies 201 with ``destination_ids``, ``credential_ids``, ``idp``, ``shared``,
    ``deliveries`` and ``apps`` (one per credential: app_id, client_id, secret_id,
    credential_id, destination_ids). See :mod:`sandbox.seeding`.
    """
    runtime = runtime_of(request)
    try:
        data = await _body(request)
        unknown = sorted(set(data) - _SEED_KEYS)
        if unknown:
            raise ValueError(f"unknown seed setting(s): {', '.join(unknown)}")
        count = data.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError("count must be an integer >= 0")
        flag = data.get("environment_flag")
        if flag is not None and not isinstance(flag, str):
            raise ValueError("environment_flag must be a string")
        idp = data.get("idp")
        if idp not in (None, "none", "okta", "entra"):
            raise ValueError("idp must be okta, entra or none")
        environment_id = data.get("environment_id")
        if environment_id is not None and not isinstance(environment_id, str):
            raise ValueError("environment_id must be a string")
        shared, deliveries = data.get("shared", False), data.get("deliveries")
        if not isinstance(shared, bool) or not isinstance(deliveries, bool | None):
            raise ValueError("shared and deliveries must be booleans")
        report = seed_destinations(
            runtime,
            count,
            environment_flag=flag,
            idp=None if idp == "none" else idp,
            shared=shared,
            environment_id=environment_id,
            deliveries=deliveries,
            base_url=base_url_of(request),
        )
    except ValueError as exc:
        return _bad(str(exc))
    return JSONResponse(report, status_code=201)


async def environments(request: Request) -> Response:
    """POST ``{environment_flag?}``: one more environment (default Development)."""
    runtime = runtime_of(request)
    try:
        data = await _body(request)
        flag = data.get("environment_flag", "Development")
        if flag not in ENVIRONMENT_FLAGS:
            raise ValueError(f"environment_flag must be one of {', '.join(ENVIRONMENT_FLAGS)}")
        number = 1 + sum(1 for e in runtime.state.environments.values() if e.flag == flag)
        env = runtime.state.add_environment(flag, number)
    except ValueError as exc:
        return _bad(str(exc))
    return JSONResponse(runtime.state.environment_view(env), status_code=201)


#: Most filler credentials one call adds.
MAX_FILLERS = 50_000


async def fillers(request: Request) -> Response:
    """POST ``{count, environment_id?}``: add ``count`` OAuth credentials named
    ``filler-NNNNN`` that no destination uses (default: the first environment), without a
    request per credential. Replies 201 with ``environment_id``, ``created`` and
    ``credentials`` (how many the environment holds now)."""
    state = runtime_of(request).state
    try:
        data = await _body(request)
        unknown = sorted(set(data) - {"count", "environment_id"})
        if unknown:
            raise ValueError(f"unknown filler setting(s): {', '.join(unknown)}")
        count = data.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_FILLERS:
            raise ValueError(f"count must be an integer from 0 to {MAX_FILLERS}")
        environment_id = data.get("environment_id")
        if environment_id is not None and not isinstance(environment_id, str):
            raise ValueError("environment_id must be a string")
        env = state.add_fillers(count, environment_id)
    except ValueError as exc:
        return _bad(str(exc))
    except KeyError:
        return _bad(f"no environment {environment_id}", 404)
    held = sum(1 for c in state.credentials.values() if c.environment_id == env.id)
    reply = {"environment_id": env.id, "created": count, "credentials": held}
    return JSONResponse(reply, status_code=201)


async def reset(request: Request) -> Response:
    """Empty destinations, credentials, tokens, IdP apps, logs, delivery stats and the journal;
    keep keys, config, faults, IdP settings and the IdP management credentials."""
    runtime_of(request).reset()
    return JSONResponse({"reset": True})


async def drift(request: Request) -> Response:
    """POST ``{destination_id, authCredential?}``: re-point a destination like a dashboard edit."""
    runtime = runtime_of(request)
    try:
        data = await _body(request)
    except ValueError as exc:
        return _bad(str(exc))
    dest_id = data.get("destination_id")
    if dest_id not in runtime.state.destinations:
        return _bad("unknown destination_id", 404)
    cred_id = data.get("authCredential")
    if cred_id is not None and not isinstance(cred_id, str):
        return _bad("authCredential must be a string")
    new_id = runtime.state.drift(dest_id, cred_id)
    return JSONResponse({"destination_id": dest_id, "authCredential": new_id})


async def keys(request: Request) -> Response:
    """GET the accepted client id / kid; PUT ``{public_key_pem, key_id?, client_id?}``."""
    runtime = runtime_of(request)
    if request.method == "PUT":
        try:
            data = await _body(request)
            pem = data.get("public_key_pem")
            if not isinstance(pem, str):
                raise ValueError("public_key_pem must be a PEM string")
            runtime.set_public_key(pem.encode())
        except ValueError as exc:
            return _bad(str(exc))
        runtime.key_id = str(data.get("key_id", runtime.key_id))
        runtime.client_id = str(data.get("client_id", runtime.client_id))
    return JSONResponse(
        {
            "client_id": runtime.client_id,
            "key_id": runtime.key_id,
            "has_public_key": runtime.public_key_pem is not None,
        }
    )


async def health(request: Request) -> Response:
    """Liveness."""
    return JSONResponse({"status": "ok"})


def control_routes() -> list[Route]:
    """Routes relative to /_sandbox."""
    return [
        Route("/faults", faults, methods=["GET", "PUT", "PATCH"]),
        Route("/ratelimit", ratelimit, methods=["GET", "PUT"]),
        Route("/journal", journal, methods=["GET", "DELETE"]),
        Route("/state", state, methods=["GET"]),
        Route("/secrets", secret_values, methods=["GET"]),
        Route("/seed", seed, methods=["POST"]),
        Route("/environments", environments, methods=["POST"]),
        Route("/credentials", fillers, methods=["POST"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/drift", drift, methods=["POST"]),
        Route("/keys", keys, methods=["GET", "PUT"]),
        Route("/health", health, methods=["GET"]),
    ]
