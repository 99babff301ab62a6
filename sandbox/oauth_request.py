"""The token request Redox makes for an ``OAuth_2.0_2-legged`` credential (redox-api.md §8).

§8 reads it from the field names [U]: ``POST <url>`` with ``Content-Type: <contentType>``
(default form-urlencoded; a JSON body when ``application/json``), ``<grantTypeName>=<grantType>``,
HTTP Basic client authentication unless ``noBasic`` is true (then the id and secret go in the
body under ``<clientIdName>`` / ``<clientSecretName>``), plus ``scope``, ``audience``,
``resource`` and ``<customFieldName>=<customFieldValue>`` when set. The token is read from
``<accessTokenName>``, its lifetime from ``<expiresFieldName>``, else
``defaultExpirationSeconds``, else :data:`FALLBACK_LIFETIME` [U].

The sandbox only ever sends this request to a loopback address: any other URL fails the
delivery without a request (the sandbox must not reach out of the machine).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

__all__ = [
    "DELIVERY_AGENT",
    "FALLBACK_LIFETIME",
    "TokenOutcome",
    "build_token_request",
    "is_loopback",
    "request_token",
]

FORM = "application/x-www-form-urlencoded"
#: User-Agent of the sandbox's delivery token requests (the IdP journal marks them).
DELIVERY_AGENT = "redox-sandbox-delivery/1.0"
#: Lifetime assumed when neither the reply nor the credential gives one [U].
FALLBACK_LIFETIME = 300.0


@dataclass(frozen=True)
class TokenOutcome:
    """A token and its lifetime in seconds, or the error that came back instead."""

    token: str | None = None
    lifetime: float | None = None
    error: dict[str, Any] | None = None


def is_loopback(url: str) -> bool:
    """True for http(s) URLs whose host is localhost or a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _no_basic(value: object) -> bool:
    """``noBasic`` counts as set for the string "true" or boolean true only [U]."""
    return value is True or value == "true"


def build_token_request(
    fields: Mapping[str, str | int], secrets: Mapping[str, str]
) -> tuple[str, dict[str, str], bytes, tuple[str, str] | None]:
    """(url, headers, body, Basic credentials or None) of the request for one credential."""
    content_type = str(fields.get("contentType") or FORM)
    body: dict[str, str] = {
        str(fields.get("grantTypeName") or "grant_type"): str(fields.get("grantType", ""))
    }
    client_id = str(fields.get("clientId", ""))
    client_secret = secrets.get("clientSecret", "")
    basic: tuple[str, str] | None = None
    if _no_basic(fields.get("noBasic")):
        body[str(fields.get("clientIdName") or "client_id")] = client_id
        body[str(fields.get("clientSecretName") or "client_secret")] = client_secret
    else:
        basic = (client_id, client_secret)
    for field, name in (("scopes", "scope"), ("audience", "audience"), ("resource", "resource")):
        if fields.get(field):
            body[name] = str(fields[field])
    if fields.get("customFieldName"):
        body[str(fields["customFieldName"])] = str(fields.get("customFieldValue", ""))
    if content_type.split(";", maxsplit=1)[0].strip().lower() == "application/json":
        raw = json.dumps(body).encode()
    else:
        raw = urlencode(body).encode()  # another content type still gets a form body [U]
    return str(fields.get("url", "")), {"Content-Type": content_type}, raw, basic


def _lifetime(reply: dict[str, Any], fields: Mapping[str, str | int]) -> float:
    for value in (
        reply.get(str(fields.get("expiresFieldName") or "expires_in")),
        fields.get("defaultExpirationSeconds"),
    ):
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value > 0:
            return float(value)
        if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
            return float(value)
    return FALLBACK_LIFETIME


def _error(status: int | None, error: str, description: str) -> TokenOutcome:
    return TokenOutcome(error={"status": status, "error": error, "error_description": description})


async def request_token(
    client: httpx.AsyncClient,
    fields: Mapping[str, str | int],
    secrets: Mapping[str, str],
    *,
    user_agent: str,
) -> TokenOutcome:
    """Make the request; a token, or the IdP's error (status, error, error_description)."""
    url, headers, body, basic = build_token_request(fields, secrets)
    if not is_loopback(url):
        return _error(
            None, "sandbox_refused", f"the sandbox only delivers to loopback token URLs, not {url}"
        )
    headers["User-Agent"] = user_agent
    headers["Accept"] = "application/json"
    try:
        auth = basic if basic is not None else httpx.USE_CLIENT_DEFAULT
        reply = await client.post(url, content=body, headers=headers, auth=auth)
    except httpx.HTTPError as exc:
        return _error(None, "connection_error", f"{type(exc).__name__}: {exc}")
    try:
        data = reply.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _error(
            reply.status_code,
            "invalid_response",
            "the token endpoint did not answer with a JSON object",
        )
    if reply.is_success:
        token = data.get(str(fields.get("accessTokenName") or "access_token"))
        if isinstance(token, str) and token:
            return TokenOutcome(token=token, lifetime=_lifetime(data, fields))
        return _error(reply.status_code, "invalid_response", "no access token in the reply")
    return _error(
        reply.status_code,
        str(data.get("error") or data.get("errorCode") or "http_error"),
        str(data.get("error_description") or data.get("errorSummary") or reply.reason_phrase),
    )
