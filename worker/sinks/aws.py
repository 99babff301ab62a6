"""AWS plumbing shared by the Secrets Manager sink and the IAM secret source.

* **Clients** come from the standard AWS credential chain (a fresh
  :class:`boto3.session.Session`: environment, shared config/credentials files, SSO,
  container and instance roles), unless explicit credentials are given (the IAM
  rehearsal signs with the new key). Timeouts are explicit; botocore's ``standard`` retry
  mode retries throttling, 5xx and connection errors inside one call, ``max_attempts``
  tries in all (the first one included; 1 = no retry).
* **Errors** are classified by :func:`classify`: throttling, 5xx, request timeouts and
  connection failures are *transient*; everything else (access denied, not found, bad
  parameters, no credentials, no region) is *permanent*. The message keeps AWS's error
  code and a short, redacted text: never a secret, a header or a whole body.

This module reads no environment variable itself: boto3 does, as every AWS tool does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from pydantic import SecretStr

from worker.secrets.idp_http import short

__all__ = [
    "TRANSIENT_CODES",
    "AwsFailure",
    "SessionFactory",
    "aws_client",
    "classify",
]

#: Error codes that mean "try again later", whatever the HTTP status (botocore's
#: throttling and transient lists, without ``LimitExceeded*``: those are quotas).
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalErrorException",
        "InternalServiceError",
        "ServiceFailure",
        "ConcurrentModification",
        "ConcurrentModificationException",
        "IDPCommunicationError",
    }
)

_XML_CODE = re.compile(r"<Code>([A-Za-z0-9_.]{1,100})</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]{0,500})</Message>")

#: Builds the boto3 session a client comes from (tests may pass their own).
SessionFactory = Callable[..., Any]


@dataclass(frozen=True)
class AwsFailure:
    """One failed AWS call, classified; ``message`` is safe to log and publish."""

    transient: bool
    code: str | None
    status: int | None
    message: str

    def label(self) -> str:
        """``403 AccessDeniedException`` (status and code, when known)."""
        parts = [str(self.status)] if self.status is not None else []
        if self.code:
            parts.append(self.code)
        return " ".join(parts) or "no reply"


def aws_client(
    service: str,
    *,
    region: str,
    endpoint_url: str | None,
    timeout: float,
    max_attempts: int,
    access_key: SecretStr | None = None,
    secret_key: SecretStr | None = None,
    session_factory: SessionFactory = boto3.session.Session,
) -> Any:
    """A boto3 client for ``service``: the default credential chain, or the key given."""
    if access_key is not None and secret_key is not None:
        session = session_factory(
            aws_access_key_id=access_key.get_secret_value(),
            aws_secret_access_key=secret_key.get_secret_value(),
            region_name=region,
        )
    else:
        session = session_factory(region_name=region)
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        user_agent_extra="redox-rotator",
    )
    return session.client(service, endpoint_url=endpoint_url or None, config=config)


def _unparsed(body: str) -> tuple[str | None, str]:
    """Code and message from an error body botocore could not parse (never the body)."""
    code = _XML_CODE.search(body)
    message = _XML_MESSAGE.search(body)
    if code is None:
        return None, "the error reply could not be parsed"
    return code.group(1), message.group(1) if message else ""


def classify(exc: BaseException, *, scrub: Iterable[str] = ()) -> AwsFailure | None:
    """The failure ``exc`` describes, or None when it is not a boto3/botocore error."""
    hidden = [value for value in scrub if value]
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        raw_code, raw_text = error.get("Code"), error.get("Message")
        code: str | None = raw_code if isinstance(raw_code, str) else None
        text: str = raw_text if isinstance(raw_text, str) else ""
        raw_status = meta.get("HTTPStatusCode")
        status = raw_status if isinstance(raw_status, int) else None
        if code is None or code.isdigit():
            # botocore could not parse the error (a proxy's page, an XML error where JSON
            # was expected): it puts the status in Code and the raw body in Message.
            code, text = _unparsed(text)
        transient = code in TRANSIENT_CODES or (
            status is not None and (status >= 500 or status == 429)
        )
        return AwsFailure(
            transient, code, status, short(text or code or "no message", scrub=hidden)
        )
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        # Connect/read timeouts, refused or dropped connections, TLS and proxy failures.
        return AwsFailure(True, type(exc).__name__, None, short(exc, scrub=hidden))
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AwsFailure(
            False,
            type(exc).__name__,
            None,
            "no usable AWS credentials in the standard chain (environment, shared files, "
            "SSO, container or instance role)",
        )
    if isinstance(exc, NoRegionError):
        return AwsFailure(False, "NoRegionError", None, "no AWS region configured")
    if isinstance(exc, BotoCoreError):
        return AwsFailure(False, type(exc).__name__, None, short(exc, scrub=hidden))
    return None
