"""``/_sandbox/deliveries...`` control endpoints (no auth): delivery settings, stats, logs,
and ``/_sandbox/destinations/{id}/token-store``, the receiver's token store.

For tests, the demo and benchmarks. The searchable log itself is the Platform API's
``POST /platform/v1/environments/{id}/logs/search/metadata``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.runtime import runtime_of
from sandbox.token_store import StoreSettings

__all__ = ["delivery_control_routes"]


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _ids(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of destination ids")
    return value


async def settings(request: Request) -> Response:
    """GET; PATCH ``{interval_seconds?, enable?: [ids], disable?: [ids]}``."""
    runtime = runtime_of(request)
    sim = runtime.deliveries
    if request.method == "PATCH":
        try:
            raw = await request.body()
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            unknown = sorted(set(data) - {"interval_seconds", "enable", "disable"})
            if unknown:
                raise ValueError(f"unknown delivery setting(s): {', '.join(unknown)}")
            enable, disable = _ids(data, "enable"), _ids(data, "disable")
            missing = [d for d in enable if d not in runtime.state.destinations]
            if missing:
                return _bad(f"unknown destination(s): {', '.join(missing)}", 404)
            interval = data.get("interval_seconds")
            if interval is not None and (
                isinstance(interval, bool)
                or not isinstance(interval, int | float)
                or not math.isfinite(interval)
                or interval <= 0
            ):
                raise ValueError("interval_seconds must be a number > 0")
        except ValueError as exc:
            return _bad(str(exc))
        if interval is not None:
            sim.set_interval(float(interval))
        sim.disable(disable)
        sim.enable(enable)
    return JSONResponse(sim.settings_view())


async def stats(request: Request) -> Response:
    """Per-destination counters (succeeded, failed, last error), totals, latest failure."""
    return JSONResponse(runtime_of(request).deliveries.stats_view())


async def tokens(request: Request) -> Response:
    """DELETE: forget the cached delivery tokens (the next messages fetch new ones)."""
    return JSONResponse({"flushed": runtime_of(request).deliveries.flush_tokens()})


async def logs(request: Request) -> Response:
    """GET ``?destination_id=``: that destination's kept logs, oldest first."""
    dest_id = request.query_params.get("destination_id")
    if not dest_id:
        return _bad("destination_id is required")
    return JSONResponse({"logs": runtime_of(request).logs.for_destination(dest_id)})


async def token_store(request: Request) -> Response:
    """GET the destination's token store (``token_store`` null if none); PUT ``{endpoint_url,
    secret_id, region?, refresh_seconds?, accept_pending?}`` attaches one (replacing any, its
    cache empty); DELETE detaches it (``detached``: whether there was one)."""
    runtime = runtime_of(request)
    dest_id: str = request.path_params["destination_id"]
    if dest_id not in runtime.state.destinations:
        return _bad(f"unknown destination: {dest_id}", 404)
    sim = runtime.deliveries
    if request.method == "DELETE":
        return JSONResponse({"destination_id": dest_id, "detached": sim.detach_store(dest_id)})
    if request.method == "PUT":
        try:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            settings = StoreSettings.from_body(data)
        except ValueError as exc:
            return _bad(str(exc))
        sim.attach_store(dest_id, settings)
    store = sim.token_stores.get(dest_id)
    view = store.view() if store is not None else None
    return JSONResponse({"destination_id": dest_id, "token_store": view})


def delivery_control_routes() -> list[Route]:
    """Routes relative to /_sandbox."""
    return [
        Route("/deliveries", settings, methods=["GET", "PATCH"]),
        Route("/deliveries/stats", stats, methods=["GET"]),
        Route("/deliveries/tokens", tokens, methods=["DELETE"]),
        Route("/deliveries/logs", logs, methods=["GET"]),
        Route(
            "/destinations/{destination_id}/token-store",
            token_store,
            methods=["GET", "PUT", "DELETE"],
        ),
    ]
