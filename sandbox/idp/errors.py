"""Error bodies of the fake IdPs, one builder per shape (idp-api.md §A3, §A6, §B5, §B7),
and the IdPs' answers to unrouted paths.

Handlers raise :class:`IdpError` carrying a ready response; :func:`idp_endpoint` turns it into
the reply, so deep helpers can refuse without threading responses back.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "IdpError",
    "aad_error",
    "graph_error",
    "idp_endpoint",
    "idp_unrouted",
    "oauth_error",
    "okta_error",
]

Handler = Callable[[Request], Awaitable[Response]]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class IdpError(Exception):
    """Raised by an IdP handler: answer with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def idp_endpoint(handler: Handler) -> Handler:
    """Turn IdpError into its response."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except IdpError as exc:
            return exc.response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def okta_error(
    status: int,
    code: str,
    summary: str,
    causes: Sequence[str] = (),
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Okta's error body: errorCode, errorSummary, errorLink (= code), errorId, errorCauses."""
    error_id = "oae" + "".join(
        secrets.choice(string.ascii_letters + string.digits) for _ in range(22)
    )
    body = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": error_id,
        "errorCauses": [{"errorSummary": cause} for cause in causes],
    }
    return JSONResponse(body, status_code=status, headers=headers)


def oauth_error(
    status: int, error: str, description: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An OAuth token endpoint error as Okta sends it: ``{"error", "error_description"}``."""
    merged = {**NO_STORE, **(headers or {})}
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=merged)


def graph_error(
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Graph's error body: ``{"error": {"code", "message", ["details"], "innerError"}}``."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    error: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    error["innerError"] = {
        "date": now,
        "request-id": str(uuid.uuid4()),
        "client-request-id": str(uuid.uuid4()),
    }
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def aad_error(
    status: int,
    error: str,
    code: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The Entra token endpoint's error body (§B7); ``error_uri`` is [U]."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} "
        f"Timestamp: {stamp}"
    )
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def idp_unrouted(path: str, status: int) -> Response | None:
    """A 404/405 in the addressed IdP's shape [U: exact texts], None outside ``/idp``."""
    if path.startswith("/idp/okta"):
        if status == 405:
            summary = "The endpoint does not support the provided HTTP method"
            return okta_error(405, "E0000022", summary)
        return okta_error(404, "E0000007", f"Not found: Resource not found: {path} (Path)")
    if path.startswith("/idp/entra/login"):
        return oauth_error(status, "invalid_request", "Unknown endpoint.")
    if path.startswith("/idp/"):
        if status == 405:
            return graph_error(405, "Request_BadRequest", "The HTTP method is not allowed here.")
        message = f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'."
        return graph_error(404, "Request_ResourceNotFound", message)
    return None
