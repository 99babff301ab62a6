"""POST /v1/environments/{environmentId}/logs/search/metadata (redox-api.md §8), strict.

The body is a JSON object; every field is optional and a single string, and only the
documented fields are accepted (anything else, or a non-string, is a 400). Timestamps must be
``YYYY-MM-DDThh:mm:ss.sssZ``; bounds are inclusive. ``status`` must be one of succeeded,
failed, filtered, pending and ``dataMode`` realtime or backfill [U: the values Redox accepts
are undocumented; refused otherwise]. ``_count`` is 1..50 (default 50); ``_cursor`` must be
one this sandbox issued for the same environment and filters [U: Redox's cursor rules are
undocumented], else 400. Logs come newest first. The reply follows the "Proposed reading" of
§8: ``meta.page.links.next`` only when there is a next page.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.replies import META, ApiError, error_response
from sandbox.runtime import runtime_of

__all__ = ["SEARCH_FIELDS", "log_routes", "search_logs"]

SEARCH_FIELDS = (
    "destinationId",
    "sourceId",
    "status",
    "type",
    "createdAfter",
    "createdBefore",
    "updatedAfter",
    "updatedBefore",
    "dataModel",
    "eventType",
    "dataMode",
    "serviceRegion",
    "facilityCode",
)
_TIMES = ("createdAfter", "createdBefore", "updatedAfter", "updatedBefore")
_CHOICES = {
    "status": ("succeeded", "failed", "filtered", "pending"),
    "dataMode": ("realtime", "backfill"),
}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
MAX_COUNT = 50


async def _filters(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "Request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    unknown = sorted(set(body) - set(SEARCH_FIELDS))
    if unknown:
        raise ApiError(400, f"Unknown search field(s): {', '.join(unknown)}")
    for name, value in body.items():
        if not isinstance(value, str):
            raise ApiError(400, f"{name} must be a single string")
        if name in _TIMES:
            _check_time(name, value)
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ApiError(400, f"{name} must be one of {', '.join(_CHOICES[name])}")
    return dict(body)


def _check_time(name: str, value: str) -> None:
    problem = ApiError(400, f"{name} must be an ISO 8601 timestamp YYYY-MM-DDThh:mm:ss.sssZ")
    if not _ISO.fullmatch(value):
        raise problem
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError as exc:
        raise problem from exc


def _count(request: Request) -> int:
    raw = request.query_params.getlist("_count")
    if not raw:
        return MAX_COUNT
    if len(raw) > 1 or not raw[0].isdigit() or not 1 <= int(raw[0]) <= MAX_COUNT:
        raise ApiError(400, f"_count must be an integer between 1 and {MAX_COUNT}")
    return int(raw[0])


def _link(environment_id: str, count: int, cursor: str | None) -> str:
    params = {"_cursor": cursor, "_count": count} if cursor else {"_count": count}
    return f"/v1/environments/{environment_id}/logs/search/metadata?{urlencode(params)}"


async def search_logs(request: Request) -> Response:
    """Search the environment's delivery logs; one page of at most ``_count``."""
    runtime = runtime_of(request)
    env_id: str = request.path_params["environmentId"]
    try:
        if env_id not in runtime.state.environments:
            raise ApiError(404, "Environment not found")
        unknown = sorted(set(request.query_params) - {"_count", "_cursor"})
        if unknown:
            raise ApiError(400, f"Unknown query parameter(s): {', '.join(unknown)}")
        count = _count(request)
        filters = await _filters(request)
        given = request.query_params.get("_cursor")
        cursor = None
        if given is not None:
            cursor = runtime.logs.cursor(given)
            if cursor is None:
                raise ApiError(400, "_cursor is not a cursor this search issued")
            if cursor.environment_id != env_id or cursor.filters != tuple(sorted(filters.items())):
                raise ApiError(400, "_cursor belongs to a search with other filters")
        logs, next_cursor = runtime.logs.search(env_id, filters, count, cursor)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    links: dict[str, Any] = {"self": _link(env_id, count, given)}
    if next_cursor is not None:
        links["next"] = _link(env_id, count, next_cursor)
    page = {"pageType": "cursor", "pageSize": count, "links": links}
    return JSONResponse({"meta": {**META, "page": page}, "payload": {"logs": logs}})


def log_routes() -> list[Route]:
    """Routes relative to /platform."""
    return [
        Route(
            "/v1/environments/{environmentId}/logs/search/metadata", search_logs, methods=["POST"]
        )
    ]
