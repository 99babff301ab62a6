"""One error tree for the whole service; its shape is the retry policy.

::

    RotatorError
    ├── UsageError                 bad settings, registry file or CLI input (exit 2)
    │   └── ConfigError
    ├── TransientError             retried: tenacity inside a call, then Celery retries
    │   ├── RedoxUnavailable       timeout, connection error, 408/500/502/503/504
    │   ├── RateLimited            429 (carries Retry-After when Redox sends one)
    │   ├── IdpUnavailable         the IdP's management API: timeout, 408/5xx, 429
    │   ├── StoreUnavailable       Redis connection lost
    │   └── SinkUnavailable        the secret sink (AWS Secrets Manager): throttled, 5xx, timeout
    ├── PermanentError             never retried; a rotation rolls back
    │   ├── RedoxRejected          400, 403, 404, 409, 422, other 4xx
    │   │   ├── RedoxAuthFailed    401 that survived one token refresh
    │   │   └── RedoxNotFound      404
    │   ├── BadRedoxResponse       non-JSON, missing payload, wrong types
    │   ├── SourceNotConfigured    no secret source for the destination (exit 2 in the CLI)
    │   ├── SecretSourceError      the secret source failed or returned garbage
    │   │   └── IdpRejected        the IdP refused a management call (401/403/404/400)
    │   │       └── IdpLimitReached   the client already holds as many secrets as allowed
    │   ├── RehearsalFailed        the IdP did not give a token for the new secret
    │   ├── VerificationFailed     Redox does not show the new credential after the switch
    │   ├── DeliveriesFailing      deliveries failed after the switch (reverted)
    │   ├── SinkRejected           the secret sink refused: access denied, no such secret
    │   └── DriftDetected          someone else changed the destination's credential
    └── LockLost                   this worker lost its lease; stop without writing

``RotatorError``, ``UsageError`` and ``ConfigError`` are defined in :mod:`config.errors` (so
Settings can raise them without importing the service) and re-exported here.

Messages are safe to log and publish: they never contain a response body, a header or
a secret value, only status codes, ids and short reasons written by this service.
"""

from __future__ import annotations

from config.errors import ConfigError, RotatorError, UsageError

__all__ = [
    "BadRedoxResponse",
    "ConfigError",
    "DeliveriesFailing",
    "DriftDetected",
    "IdpLimitReached",
    "IdpRejected",
    "IdpUnavailable",
    "LockLost",
    "PermanentError",
    "RateLimited",
    "RedoxAuthFailed",
    "RedoxNotFound",
    "RedoxRejected",
    "RedoxUnavailable",
    "RehearsalFailed",
    "RotatorError",
    "RunTimedOut",
    "SecretSourceError",
    "SinkRejected",
    "SinkUnavailable",
    "SourceNotConfigured",
    "StoreUnavailable",
    "TransientError",
    "UsageError",
    "VerificationFailed",
    "error_class",
]


class TransientError(RotatorError):
    """May succeed if tried again later."""


class PermanentError(RotatorError):
    """Trying again with the same input cannot succeed."""


class RedoxUnavailable(TransientError):
    """Redox did not answer in time, dropped the connection, or answered 5xx."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RateLimited(TransientError):
    """Redox answered 429; ``retry_after`` is its Retry-After in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.status = 429
        self.retry_after = retry_after
        super().__init__(message)


class IdpUnavailable(TransientError):
    """The IdP's management API timed out, dropped the connection, or answered 408/5xx/429."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class StoreUnavailable(TransientError):
    """Redis could not be reached."""


class RunTimedOut(TransientError):
    """The task run used its time budget (``ROTATOR_CELERY__SOFT_TIME_LIMIT``, enforced by
    the service on every pool): it stops between calls and the rotation resumes later.
    Never retried within a call."""


class SinkUnavailable(TransientError):
    """The secret sink (AWS Secrets Manager) was throttled, answered 5xx or did not answer.

    ``code`` is the service's error code (``ThrottlingException``...) when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class RedoxRejected(PermanentError):
    """Redox refused the request (4xx other than 401-once and 429)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RedoxAuthFailed(RedoxRejected):
    """Redox refused our token even after one refresh, or refused the token request."""


class RedoxNotFound(RedoxRejected):
    """The destination or credential does not exist (404)."""


class BadRedoxResponse(PermanentError):
    """Redox answered 2xx with something we cannot parse."""


class SecretSourceError(PermanentError):
    """The secret source failed, timed out, or returned something unusable.

    ``nothing_issued`` is set when the failure proves no secret was made (the command was
    not found or exited non-zero, the service refused the connection or answered an error,
    the IdP refused the call): the undo then has nothing to revoke. Otherwise (a timeout,
    unreadable output) a secret may exist, and the undo asks the source to revoke it.
    """

    def __init__(self, message: str, *, nothing_issued: bool = False) -> None:
        self.nothing_issued = nothing_issued
        super().__init__(message)


class SourceNotConfigured(PermanentError):
    """No secret source is configured for the destination: refused before any Redox call."""

    exit_code = 2


class IdpRejected(SecretSourceError):
    """The IdP's management API refused the call (bad token, no permission, unknown client).

    ``code`` is the IdP's own error code (Okta ``E0000011``, Graph ``Authorization_RequestDenied``)
    when it sent one. A person must act: the rotation ends in ``needs_attention``.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message, nothing_issued=True)


class IdpLimitReached(IdpRejected):
    """The OAuth client already holds as many secrets as its IdP allows (Okta: two)."""


class RehearsalFailed(PermanentError):
    """The token request Redox will make, rehearsed with the new secret, got no token.

    ``error`` / ``description`` are what the IdP answered (OAuth ``error`` and
    ``error_description``, never a secret); ``status`` its HTTP status, if it answered.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(message)


class DeliveriesFailing(PermanentError):
    """Deliveries to the destination failed after the switch (more than before it)."""


class SinkRejected(PermanentError):
    """The secret sink refused the call: access denied, no such secret or version, a
    request it will never accept, or no AWS credentials at all. A person must act.

    ``code`` is the service's error code (``AccessDeniedException``,
    ``ResourceNotFoundException``...) when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class VerificationFailed(PermanentError):
    """After the switch Redox does not show the new credential on the destination."""


class DriftDetected(PermanentError):
    """The destination's credential is neither the one we recorded nor the one we made;
    ``found`` is the credential it uses now (None when it has none)."""

    def __init__(self, message: str, *, found: str | None = None) -> None:
        self.found = found
        super().__init__(message)


class LockLost(RotatorError):
    """The single-flight lease expired or was taken over: stop without another write."""


def error_class(exc: BaseException) -> str:
    """Name of the error class, as published in events (``error.class``)."""
    return type(exc).__name__
