"""Where a destination's *own* new secret is published: one spec per kind of secret sink.

A secret sink holds a secret the destination's receiver must learn (for example the
``verification-token`` Redox sends with every delivery): the rotation publishes the new
value as *pending*, switches Redox, then promotes it to *current*
(:mod:`worker.sinks`). The only kind so far:

======================= ===============================================================
kind                    where the value goes
======================= ===============================================================
``aws-secrets-manager`` a new version of one AWS Secrets Manager secret, staged with the
                        ``AWSPENDING`` / ``AWSCURRENT`` / ``AWSPREVIOUS`` labels
======================= ===============================================================

A spec names the secret; it never holds a value or a credential. The sink signs in with
the standard AWS credential chain of the process (environment, shared files, SSO,
container or instance role).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from config.durations import parse_duration

__all__ = [
    "SINK_KINDS",
    "AwsSecretsManagerSpec",
    "EndpointUrl",
    "SecretSinkSpec",
    "aws_region_problem",
    "endpoint_problem",
]

SINK_KINDS: tuple[str, ...] = ("aws-secrets-manager",)

#: ``us-east-1``, ``eu-central-2``, ``us-gov-west-1``, ``cn-north-1``, ``ap-southeast-5``...
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
#: ``arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 chars>``
_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+")
#: Secrets Manager secret names: letters, digits and /_+=.@- (at most 512 characters).
_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")


def _seconds(value: object) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a duration like '10s', got {value!r}")
    return float(value)


def aws_region_problem(value: str) -> str | None:
    """Why ``value`` is not an AWS region name (None when it looks like one)."""
    if _REGION.fullmatch(value):
        return None
    return f"must be an AWS region such as us-east-1, got {value!r}"


def endpoint_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) endpoint URL (None when it is one)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an absolute https URL, got {value!r}"
    return None


def _endpoint(value: str) -> str:
    problem = endpoint_problem(value)
    if problem:
        raise ValueError(problem)
    return value.rstrip("/")


#: Another endpoint than AWS's (a VPC endpoint, or moto in tests): absolute, no trailing /.
EndpointUrl = Annotated[str, AfterValidator(_endpoint)]


class AwsSecretsManagerSpec(BaseModel):
    """One AWS Secrets Manager secret, named by ARN or by name (never its value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["aws-secrets-manager"] = "aws-secrets-manager"
    #: The secret's ARN, or its name (a name is looked up in ``region``).
    secret_id: str = Field(min_length=1, max_length=2048)
    #: The secret's region; may be left out when ``secret_id`` is an ARN (it names one).
    region: str = ""
    #: Another endpoint than AWS's (a VPC endpoint, or moto in tests). https unless
    #: ``ROTATOR_ALLOW_INSECURE_HTTP=true``.
    endpoint_url: EndpointUrl | None = None
    timeout: Annotated[float, BeforeValidator(_seconds)] = 10.0

    @field_validator("secret_id")
    @classmethod
    def _check_secret_id(cls, value: str) -> str:
        if value.startswith("arn:"):
            if not _ARN.fullmatch(value):
                raise ValueError(f"not a Secrets Manager secret ARN: {value!r}")
        elif not _NAME.fullmatch(value):
            raise ValueError(
                f"a secret name has 1-512 letters, digits and /_+=.@- characters, got {value!r}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _region_from_arn(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("region"):
            match = _ARN.fullmatch(str(data.get("secret_id", "")))
            if match:
                return {**data, "region": match.group("region")}
        return data

    @model_validator(mode="after")
    def _check_region(self) -> AwsSecretsManagerSpec:
        if not self.region:
            raise ValueError("region: required when secret_id is a name, not an ARN")
        problem = aws_region_problem(self.region)
        if problem:
            raise ValueError(f"region: {problem}")
        match = _ARN.fullmatch(self.secret_id)
        if match and match.group("region") != self.region:
            raise ValueError(
                f"region: {self.region} differs from the ARN's region {match.group('region')} "
                "(Secrets Manager looks a secret up in its own region)"
            )
        return self


#: Every kind's spec, told apart by ``kind`` (one kind so far; the next one joins here as a
#: discriminated union, as in :mod:`config.secret_sources`).
SecretSinkSpec = AwsSecretsManagerSpec
