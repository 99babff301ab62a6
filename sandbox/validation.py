"""Strict checks of request bodies: only documented fields, documented types (redox-api.md §2-3)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sandbox.replies import ApiError

__all__ = [
    "CREDENTIAL_ENVELOPE",
    "DESTINATION_PATCH_FIELDS",
    "MAX_VERIFICATION_TOKEN",
    "SECRET_FIELDS",
    "STRATEGIES",
    "has_name",
    "validate_credential_fields",
    "validate_destination_patch",
]

_OAUTH_FIELDS = [
    "grantType",
    "username",
    "password",
    "url",
    "grantTypeName",
    "clientIdName",
    "clientSecretName",
    "refreshTokenName",
    "clientId",
    "clientSecret",
    "accessTokenName",
    "expiresFieldName",
    "refreshGrantType",
    "audience",
    "scopes",
    "contentType",
    "noBasic",
    "resource",
    "customFieldName",
    "customFieldValue",
    "defaultExpirationSeconds",
]

#: GET /v1/authcredentials/strategies; SMART_Backend's documented list starts like OAuth's.
STRATEGIES: dict[str, list[str]] = {
    "AwsSigv4": ["accessKey", "secretKey", "serviceName", "awsRegion", "sessionToken"],
    "GoogleWIF": [
        "audience",
        "delegates",
        "lifetime",
        "options",
        "scope",
        "service_account_impersonation_url",
        "sts_scope",
        "token_url",
    ],
    "OAuth_2.0_2-legged": list(_OAUTH_FIELDS),
    "SMART_Backend": list(_OAUTH_FIELDS),
}

#: Fields never returned; responses carry ``has<Field>`` booleans instead.
#: ``accessKey`` is an AWS key *id*, not a secret.
SECRET_FIELDS = frozenset({"clientSecret", "password", "secretKey", "sessionToken"})

#: Envelope keys of POST/PATCH /v1/authcredentials, beside the strategy's fields.
CREDENTIAL_ENVELOPE = ("organization", "name", "environmentId", "authStrategy")

#: The only keys PATCH /v1/destinations/{id} accepts.
DESTINATION_PATCH_FIELDS = ("name", "authCredential", "endpoint", "verificationToken")

#: Longest verificationToken accepted [U: Redox documents no limit; it travels in a header].
MAX_VERIFICATION_TOKEN = 1024

_OAUTH_STRATEGY = "OAuth_2.0_2-legged"


def has_name(field: str) -> str:
    """``clientSecret`` -> ``hasClientSecret``."""
    return "has" + field[0].upper() + field[1:]


def check_url(name: str, value: str, *, require_https: bool) -> None:
    """400 unless ``value`` is an absolute http(s) URL (https when required)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(400, f"{name} must be an absolute http(s) URL")
    if require_https and parts.scheme != "https":
        raise ApiError(400, f"{name} must use HTTPS in Staging and Production environments")


def validate_destination_patch(body: dict[str, Any], *, https_only: bool) -> dict[str, str]:
    """Check a PATCH destination body; return it typed. Existence checks are the caller's."""
    unknown = sorted(set(body) - set(DESTINATION_PATCH_FIELDS))
    if unknown:
        raise ApiError(400, f"Unknown field(s) in destination update: {', '.join(unknown)}")
    for key, value in body.items():
        # A null authCredential (detach) is undocumented: refused here on purpose.
        if not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string")
    if "name" in body and not body["name"].strip():
        raise ApiError(400, "name must not be empty")
    if "authCredential" in body and not body["authCredential"]:
        raise ApiError(400, "authCredential must not be empty")
    if "endpoint" in body:
        check_url("endpoint", body["endpoint"], require_https=https_only)
    if "verificationToken" in body:
        check_verification_token(body["verificationToken"])
    return dict(body)


def check_verification_token(value: str) -> None:
    """400 unless ``value`` can travel as a header value unchanged (the message never shows it).

    [U] Redox documents no format: 1 to :data:`MAX_VERIFICATION_TOKEN` printable ASCII
    characters, no whitespace at either end (HTTP would strip it), is the sandbox's rule.
    """
    if not 1 <= len(value) <= MAX_VERIFICATION_TOKEN:
        raise ApiError(
            400, f"verificationToken must be 1 to {MAX_VERIFICATION_TOKEN} characters long"
        )
    if not all(" " <= char <= "~" for char in value) or value != value.strip():
        raise ApiError(
            400,
            "verificationToken must be printable ASCII without whitespace at either end",
        )


def validate_credential_fields(
    body: dict[str, Any],
    *,
    strategy: str,
    https_only: bool,
) -> dict[str, str | int]:
    """Check the strategy fields of a credential body; return them (envelope keys dropped).

    Unknown keys, read-only keys (``id``, ``createdAt``, ``has*``) and non-string values
    are 400s; OAuth needs ``grantType == "client_credentials"`` and a ``url``.
    """
    allowed = STRATEGIES[strategy]
    values: dict[str, str | int] = {}
    for key, value in body.items():
        if key in CREDENTIAL_ENVELOPE:
            continue
        if key not in allowed:
            why = "is read-only" if _read_only(key) else f"is not a field of {strategy}"
            raise ApiError(400, f"Field {key} {why}")
        values[key] = _field_value(key, value)
    if strategy == _OAUTH_STRATEGY:
        grant = values.get("grantType")
        if grant is None:
            raise ApiError(400, "grantType is required")
        if grant != "client_credentials":
            raise ApiError(400, "grantType must be client_credentials")
        url = values.get("url")
        if url is None:
            raise ApiError(400, "url is required")
        check_url("url", str(url), require_https=https_only)
    return values


def _read_only(key: str) -> bool:
    return key in ("id", "createdAt", "updatedAt") or (key.startswith("has") and key[3:4].isupper())


def _field_value(key: str, value: object) -> str | int:
    if key == "defaultExpirationSeconds":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return value
        raise ApiError(400, "defaultExpirationSeconds must be an integer or a numeric string")
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value
