"""Response shapes the Redox Platform API uses: the envelope, error bodies, OAuth errors."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response

__all__ = [
    "META",
    "ApiError",
    "envelope",
    "envelope_with_list",
    "error_page",
    "error_response",
    "oauth_error",
    "unauthorized",
]

META = {"version": "1.0.0"}

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ApiError(Exception):
    """Raised by a handler to answer with a platform error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def envelope(payload: dict[str, Any], status: int = 200) -> JSONResponse:
    """``{"meta":{"version":"1.0.0"},"payload":{...}}``."""
    return JSONResponse({"meta": META, "payload": payload}, status_code=status)


def envelope_with_list(key: str, items_json: bytes) -> Response:
    """:func:`envelope` of ``{key: [...]}`` from an already serialized JSON array."""
    head = json.dumps({"meta": META}, separators=(",", ":"))[:-1]
    body = f'{head},"payload":{{{json.dumps(key)}:'.encode() + items_json + b"}}"
    return Response(body, media_type="application/json")


def reason(status: int) -> str:
    """Standard reason phrase for ``status``."""
    return _REASONS.get(status, "Error")


def error_response(
    status: int,
    message: str | None = None,
    *,
    html_body: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A platform error: the JSON error envelope, or an HTML page like a gateway sends."""
    text = message or reason(status)
    if html_body:
        return HTMLResponse(error_page(status, text), status_code=status, headers=headers)
    body = {"meta": META, "errors": [{"message": text}]}
    return JSONResponse(body, status_code=status, headers=headers)


def error_page(status: int, message: str) -> str:
    """A small HTML error page (what a load balancer answers with)."""
    title = f"{status} {reason(status)}"
    return (
        "<!DOCTYPE html>\n<html><head><title>"
        f"{title}</title></head><body><center><h1>{title}</h1></center>"
        f"<p>{html.escape(message)}</p><hr><center>redox-sandbox</center></body></html>\n"
    )


def unauthorized() -> JSONResponse:
    """The Platform API's answer to a missing, unknown or expired bearer token."""
    return JSONResponse(
        {"errors": [{"message": "Unauthorized"}]},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """Token endpoint error: ``{"error", "error_description", "error_uri"}``."""
    return JSONResponse(
        {"error": error, "error_description": description, "error_uri": ""},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )
