"""Pydantic models for the Redox Platform API: tolerant in what we read, strict in what we send.

Replies are wrapped ``{"meta": ..., "payload": {...}}``; unknown fields are kept on read
(Redox may add some) but only fields documented in ``redox-api.md`` are ever sent. Secret
values live in :class:`pydantic.SecretStr` and never show in a repr.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from worker.errors import BadRedoxResponse

__all__ = [
    "ENVELOPE_FIELDS",
    "SECRET_FIELDS",
    "STRATEGY_FIELDS",
    "AuthCredential",
    "Destination",
    "Environment",
    "NewCredential",
    "parse_payload",
]

#: Fields every create/update body may carry besides the strategy's own (redox-api.md §3).
ENVELOPE_FIELDS = ("organization", "name", "environmentId", "authStrategy")

#: Documented ``availableFields`` per strategy (redox-api.md §3). Others are fetched at run time.
STRATEGY_FIELDS: dict[str, tuple[str, ...]] = {
    "AwsSigv4": ("accessKey", "secretKey", "serviceName", "awsRegion", "sessionToken"),
    "GoogleWIF": (
        "audience", "delegates", "lifetime", "options", "scope",
        "service_account_impersonation_url", "sts_scope", "token_url",
    ),
    "OAuth_2.0_2-legged": (
        "grantType", "username", "password", "url", "grantTypeName", "clientIdName",
        "clientSecretName", "refreshTokenName", "clientId", "clientSecret", "accessTokenName",
        "expiresFieldName", "refreshGrantType", "audience", "scopes", "contentType", "noBasic",
        "resource", "customFieldName", "customFieldValue", "defaultExpirationSeconds",
    ),
}  # fmt: skip

#: Fields Redox stores but never returns (it answers ``has<Field>`` instead).
SECRET_FIELDS = frozenset({"clientSecret", "password", "secretKey", "sessionToken"})

M = TypeVar("M", bound=BaseModel)


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class EnvironmentRef(_Tolerant):
    """The ``environment`` object inside a destination."""

    id: str
    environment_flag: str | None = Field(None, alias="environmentFlag")


class Destination(_Tolerant):
    """A destination as Redox returns it (non-secret fields only)."""

    id: str
    name: str | None = None
    auth_credential: str | None = Field(None, alias="authCredential")
    endpoint: str | None = None
    environment: EnvironmentRef | None = None

    @field_validator("auth_credential", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @property
    def environment_id(self) -> str | None:
        """The destination's environment id, when Redox includes it."""
        return self.environment.id if self.environment else None


class AuthCredential(_Tolerant):
    """An auth credential's metadata and non-secret fields (``has*`` flags for secrets)."""

    id: str
    name: str | None = None
    organization: int | None = None
    environment_id: str | None = Field(None, alias="environmentId")
    auth_strategy: str | None = Field(None, alias="authStrategy")
    created_at: str | None = Field(None, alias="createdAt")
    updated_at: str | None = Field(None, alias="updatedAt")

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("organization", mode="before")
    @classmethod
    def _organization_number(cls, value: Any) -> Any:
        if isinstance(value, dict):  # tolerate {"id": 118}
            value = value.get("id")
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return value

    def strategy_values(self, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The non-secret values of documented strategy fields this credential carries."""
        extra = self.model_extra or {}
        return {
            name: extra[name]
            for name in allowed
            if name in extra and name not in SECRET_FIELDS and extra[name] is not None
        }


class Environment(_Tolerant):
    """An environment of the organization."""

    id: str
    name: str | None = None
    environment_flag: str | None = Field(None, alias="environmentFlag")


class NewCredential(BaseModel):
    """Body of ``POST /v1/authcredentials``: documented fields only, secrets as SecretStr."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    environment_id: str
    auth_strategy: str
    organization: int | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)

    def body(self, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The JSON body, revealing secrets; refuses any field Redox does not document."""
        unknown = sorted((set(self.values) | set(self.secrets)) - set(allowed))
        if unknown:
            raise ValueError(f"fields not documented for {self.auth_strategy}: {unknown}")
        exposed = sorted(set(self.values) & SECRET_FIELDS)
        if exposed:  # a secret in ``values`` would show in reprs and logs
            raise ValueError(f"secret fields must be passed in secrets, not values: {exposed}")
        body: dict[str, Any] = {
            "name": self.name,
            "environmentId": self.environment_id,
            "authStrategy": self.auth_strategy,
        }
        if self.organization is not None:
            body["organization"] = self.organization
        body.update(self.values)
        body.update({key: value.get_secret_value() for key, value in self.secrets.items()})
        return body


def parse_payload(data: Any, what: str) -> dict[str, Any]:
    """The ``payload`` object of a Redox reply, or BadRedoxResponse saying what is wrong."""
    if not isinstance(data, dict):
        raise BadRedoxResponse(f"{what}: reply is not a JSON object")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise BadRedoxResponse(f"{what}: reply has no payload object")
    return payload


def pick_object(payload: dict[str, Any], keys: tuple[str, ...], what: str) -> dict[str, Any]:
    """The first of ``keys`` in the payload holding an object, or the payload itself if it has
    an ``id`` (Redox's wrapper keys are unconfirmed, so we accept each documented variant)."""
    for key in keys:
        value = payload.get(key)
        if isinstance(value, dict):
            return value
    if "id" in payload:
        return payload
    raise BadRedoxResponse(f"{what}: payload has none of {', '.join(keys)}")


def pick_list(payload: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    """The list under ``key`` in the payload (every item an object)."""
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRedoxResponse(f"{what}: payload.{key} is not a list of objects")
    return value


def validate_model(model: type[M], data: dict[str, Any], what: str) -> M:
    """``model.model_validate(data)`` with a one-line BadRedoxResponse on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "reply"
        raise BadRedoxResponse(f"{what}: {field}: {first.get('msg', 'invalid')}") from None
