"""Where a rotation's new secret comes from: one spec per kind, for Settings and the registry.

Each kind is one pydantic model; :data:`SecretSourceSpec` is their discriminated union
(``kind``). Settings hold a default per kind (``ROTATOR_SECRET_SOURCE__KIND`` picks one,
and there is no default kind), a registry entry may name its own; the worker builds the
live source from the spec (:func:`worker.secrets.build_source`). Specs never come from
Redis: only from Settings and the registry file.

=========== ==========================================================================
kind        what issues the secret
=========== ==========================================================================
``okta``    Okta's app client-secret API (a second secret of the destination's client)
``entra``   Microsoft Graph ``addPassword`` on the destination's app registration
``command`` an executable: ``CMD issue <destination> <rotation> <client id>`` prints JSON
            ``{"secret": "...", "secretId": "..."}`` (or ``{"secrets": {field: value}}``);
            ``CMD revoke <destination> <rotation> <credential id> <secret id>`` revokes
``http``    the same protocol as JSON over HTTPS POST with a bearer token
``generate`` a random value made in the worker: only for receivers that learn secrets
            some other way (it is never the default)
``aws-iam`` a second IAM access key of the IAM user an ``AwsSigv4`` credential signs as
            (IAM allows two per user); the AWS credential chain of the process signs in
=========== ==========================================================================

A secret (API token, client secret) is never written in the registry file: name the
environment variable that holds it (``api_token_env``, ``client_secret_env``,
``token_env``). In Settings the value itself comes from the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.durations import parse_duration
from config.secret_sinks import EndpointUrl, aws_region_problem

__all__ = [
    "KINDS",
    "AwsIamSpec",
    "CommandSpec",
    "EntraSpec",
    "GenerateSpec",
    "HttpSpec",
    "OktaSpec",
    "SecretSourceSettings",
    "SecretSourceSpec",
    "SourceKind",
    "merged_spec",
]

SourceKind = Literal["okta", "entra", "command", "http", "generate", "aws-iam"]
KINDS: tuple[str, ...] = ("okta", "entra", "command", "http", "generate", "aws-iam")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Validation context key set while a registry file is parsed (secrets refused there).
REGISTRY_CONTEXT = "registry"


def _seconds(value: object) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a duration like '10s', got {value!r}")
    return float(value)


Seconds = Annotated[float, BeforeValidator(_seconds)]


def _env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.fullmatch(value):
        raise ValueError(f"must be the name of an environment variable, got {value!r}")
    return value


def _absolute_url(value: str, *, allow_empty: bool = True) -> str:
    if not value and allow_empty:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute https URL, got {value!r}")
    return value.rstrip("/")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_registry(cls, data: Any, info: ValidationInfo) -> Any:
        if not (isinstance(data, dict) and info.context and info.context.get(REGISTRY_CONTEXT)):
            return data
        for name, field in cls.model_fields.items():
            if field.annotation == SecretStr | None and data.get(name) is not None:
                raise ValueError(
                    f"{name}: a secret does not belong in the registry file: name the "
                    f"environment variable that holds it ({name}_env)"
                )
        return data

    def secret_names(self) -> dict[str, str]:
        """Secret field -> the environment variable named for it in the registry."""
        return {}

    def problems(self, name: str) -> list[str]:
        """What is missing for this spec to be usable (``name``: its settings prefix)."""
        return []


class OktaSpec(_Spec):
    """Okta's application client-secret API; the app id is the credential's ``clientId``."""

    kind: Literal["okta"] = "okta"
    #: The org base URL, e.g. ``https://example.okta.com`` (the API lives under /api/v1).
    org_url: str = ""
    #: An Okta API token (``SSWS``) with ``okta.apps.manage`` on the target apps.
    api_token: SecretStr | None = None
    api_token_env: str | None = None
    timeout: Seconds = 10.0

    @field_validator("org_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _absolute_url(value)

    @field_validator("api_token_env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        return _env_name(value)

    def secret_names(self) -> dict[str, str]:
        return {"api_token": self.api_token_env} if self.api_token_env else {}

    def problems(self, name: str) -> list[str]:
        found = [] if self.org_url else [f"{name}__ORG_URL is not set (kind okta)"]
        if self.api_token is None and self.api_token_env is None:
            found.append(f"{name}__API_TOKEN is not set (kind okta)")
        return found


class EntraSpec(_Spec):
    """Microsoft Graph addPassword / removePassword on the app whose ``appId`` is the
    credential's ``clientId``; the service principal needs ``Application.ReadWrite.OwnedBy``
    and must own the app."""

    kind: Literal["entra"] = "entra"
    tenant_id: str = ""
    #: The service principal the service signs in as (not the destination's client).
    client_id: str = ""
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    #: PEM with the private key and certificate, instead of a client secret.
    certificate_path: Path | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    #: Retiring a credential that predates the service also removes the app's passwords
    #: created before the new one (off: an Entra app's passwords may serve other clients).
    revoke_preexisting: bool = False
    timeout: Seconds = 10.0

    @field_validator("graph_url", "login_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _absolute_url(value, allow_empty=False)

    @field_validator("client_secret_env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        return _env_name(value)

    def secret_names(self) -> dict[str, str]:
        return {"client_secret": self.client_secret_env} if self.client_secret_env else {}

    def problems(self, name: str) -> list[str]:
        found = [
            f"{name}__{field.upper()} is not set (kind entra)"
            for field in ("tenant_id", "client_id")
            if not getattr(self, field)
        ]
        has_secret = self.client_secret is not None or self.client_secret_env is not None
        if has_secret == (self.certificate_path is not None):
            found.append(
                f"{name}__CLIENT_SECRET or {name}__CERTIFICATE_PATH: set exactly one (kind entra)"
            )
        return found


class CommandSpec(_Spec):
    """An executable speaking the issue/revoke protocol (module docstring)."""

    kind: Literal["command"] = "command"
    command: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, min_length=1)
    timeout: Seconds = 20.0

    def problems(self, name: str) -> list[str]:
        return [] if self.command else [f"{name}__COMMAND is not set (a JSON list, kind command)"]


class HttpSpec(_Spec):
    """The issue/revoke protocol as JSON POSTs to ``url`` with a bearer token."""

    kind: Literal["http"] = "http"
    url: str = ""
    token: SecretStr | None = None
    token_env: str | None = None
    timeout: Seconds = 10.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _absolute_url(value)

    @field_validator("token_env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        return _env_name(value)

    def secret_names(self) -> dict[str, str]:
        return {"token": self.token_env} if self.token_env else {}

    def problems(self, name: str) -> list[str]:
        found = [] if self.url else [f"{name}__URL is not set (kind http)"]
        if self.token is None and self.token_env is None:
            found.append(f"{name}__TOKEN is not set (kind http)")
        return found


class GenerateSpec(_Spec):
    """A random URL-safe value of ``length`` characters, made in the worker."""

    kind: Literal["generate"] = "generate"
    length: int = Field(48, ge=16, le=512, strict=True)


#: IAM user names: letters, digits and +=,.@_- (at most 64 characters).
_IAM_USER = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")


class AwsIamSpec(_Spec):
    """IAM access keys of one IAM user, for ``AwsSigv4`` credentials: a second key is
    created, rehearsed with STS ``GetCallerIdentity``, and the old one deactivated, then
    deleted, when its credential retires. The service signs in with the standard AWS
    credential chain (no secret here); its identity needs ``iam:ListAccessKeys``,
    ``CreateAccessKey``, ``UpdateAccessKey``, ``DeleteAccessKey`` (and
    ``GetAccessKeyLastUsed`` when ``user_name`` is not set) on the user."""

    kind: Literal["aws-iam"] = "aws-iam"
    #: The IAM user whose keys rotate; unset: found from the old key's id
    #: (``GetAccessKeyLastUsed``), i.e. the credential's ``accessKey``.
    user_name: str | None = None
    #: Region of the STS endpoint the rehearsal calls when the credential has no
    #: ``awsRegion`` (IAM itself is global).
    region: str = ""
    #: Other endpoints than AWS's (VPC endpoints, or moto in tests): https unless
    #: ``ROTATOR_ALLOW_INSECURE_HTTP=true``.
    endpoint_url: EndpointUrl | None = None
    sts_endpoint_url: EndpointUrl | None = None
    timeout: Seconds = 10.0

    @field_validator("user_name")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        if value is not None and not _IAM_USER.fullmatch(value):
            raise ValueError(
                f"an IAM user name has 1-64 letters, digits and +=,.@_- characters, got {value!r}"
            )
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        problem = aws_region_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    def problems(self, name: str) -> list[str]:
        return [] if self.region else [f"{name}__REGION is not set (kind aws-iam)"]


SecretSourceSpec = Annotated[
    OktaSpec | EntraSpec | CommandSpec | HttpSpec | GenerateSpec | AwsIamSpec,
    Field(discriminator="kind"),
]


class SecretSourceSettings(BaseModel):
    """``ROTATOR_SECRET_SOURCE__*``: the default kind (none unless set) and each kind's
    settings, e.g. ``ROTATOR_SECRET_SOURCE__OKTA__ORG_URL``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind | None = None
    okta: OktaSpec = OktaSpec()
    entra: EntraSpec = EntraSpec()
    command: CommandSpec = CommandSpec()
    http: HttpSpec = HttpSpec()
    generate: GenerateSpec = GenerateSpec()
    aws_iam: AwsIamSpec = AwsIamSpec()

    @field_validator("kind", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # `ROTATOR_SECRET_SOURCE__KIND=` means unset

    def spec_for(self, kind: str) -> SecretSourceSpec:
        """The settings' spec of ``kind`` (``aws-iam`` lives in the field ``aws_iam``)."""
        spec: SecretSourceSpec = getattr(self, _field_name(kind))
        return spec

    def selected(self) -> SecretSourceSpec | None:
        """The default source, or None when ``ROTATOR_SECRET_SOURCE__KIND`` is not set."""
        return None if self.kind is None else self.spec_for(self.kind)

    @model_validator(mode="after")
    def _complete(self) -> SecretSourceSettings:
        problems = spec_problems(self.selected(), "ROTATOR_SECRET_SOURCE")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def merged_spec(settings: SecretSourceSettings, spec: SecretSourceSpec) -> SecretSourceSpec:
    """A registry ``spec`` over the settings of the same kind: what the file sets wins."""
    base = settings.spec_for(spec.kind)
    values = {**base.model_dump(), **spec.model_dump(exclude_unset=True)}
    return type(spec).model_validate(values)


def spec_problems(spec: SecretSourceSpec | None, prefix: str) -> list[str]:
    """What a spec still lacks to be usable (one line each, naming the setting)."""
    if spec is None:
        return []
    return spec.problems(f"{prefix}__{_field_name(spec.kind).upper()}")


def _field_name(kind: str) -> str:
    """The settings field (and env var part) of a kind: ``aws-iam`` -> ``aws_iam``."""
    return kind.replace("-", "_")
