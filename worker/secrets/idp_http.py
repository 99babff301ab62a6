"""Plumbing shared by the IdP secret sources (Okta, Entra) and the token rehearsal.

Same house rules as the Redox client: one pooled ``httpx.Client`` per source with explicit
timeouts, no cookies kept, no redirects followed, replies read up to ``MAX_REPLY_BYTES``;
transport failures become :class:`~worker.errors.IdpUnavailable`. Retries are tenacity with
full-jitter exponential backoff, the IdP's Retry-After honoured, bounded by attempts *and*
a deadline (no wait is started that would end past it). Everything written into a message
goes through :func:`short`: whitespace collapsed, known secret values and secret-shaped
text removed, truncated. No helper here ever logs or returns a whole body. OAuth error
replies are read by :func:`oauth_error`; certificate client assertions (``private_key_jwt``)
are signed by :class:`CertificateAssertion`.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from worker import guard
from worker.errors import ConfigError, IdpUnavailable, SecretSourceError
from worker.logging import REDACTED, get_logger, redact_text

__all__ = [
    "MAX_REPLY_BYTES",
    "CertificateAssertion",
    "IdpRetry",
    "Reply",
    "RetryPolicy",
    "build_http_client",
    "call_with_retry",
    "clean_oauth_description",
    "is_transient_status",
    "oauth_error",
    "path_segment",
    "require_client_id",
    "require_https",
    "send",
    "short",
]

T = TypeVar("T")
log = get_logger(__name__)

#: Largest IdP reply we read; a secret list or a token reply is a few KiB.
MAX_REPLY_BYTES = 1024 * 1024
#: Where an Entra ``error_description`` stops being a sentence and starts being trace data.
_TRACE_MARKERS = re.compile(r"\s*(?:Trace ID|Correlation ID|Timestamp)\s*:", re.IGNORECASE)
_AADSTS = re.compile(r"AADSTS\d+")


class RetryPolicy(Protocol):
    """What a retry budget needs (``config.settings.RetrySettings`` fits, so does
    :class:`IdpRetry`)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def max_seconds(self) -> float: ...
    @property
    def backoff_initial(self) -> float: ...
    @property
    def backoff_max(self) -> float: ...


@dataclass(frozen=True)
class IdpRetry:
    """The default budget for one IdP management call: a few tries, well under 30 s."""

    max_attempts: int = 4
    max_seconds: float = 20.0
    backoff_initial: float = 0.5
    backoff_max: float = 4.0


@dataclass(frozen=True)
class Reply:
    """One HTTP reply, read in full (capped)."""

    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _NoCookies(CookieJar):
    """IdP APIs need no cookies: none is kept or replayed on another call."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Keep nothing."""


def require_https(url: str, *, setting: str, allow_insecure_http: bool) -> str:
    """``url`` without a trailing slash; ConfigError unless absolute https (or http when
    ``allow_insecure_http``), naming the ``setting`` that holds it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"{setting}: not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{setting}: must be an absolute https URL")
    if parts.scheme == "http" and not allow_insecure_http:
        raise ConfigError(
            f"{setting}: must use https (set ROTATOR_ALLOW_INSECURE_HTTP=true only for a "
            "local sandbox)"
        )
    return url.rstrip("/")


def build_http_client(timeout: float, transport: httpx.BaseTransport | None) -> httpx.Client:
    """One pooled client: explicit timeouts, JSON accepted, no cookies, no redirects."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        headers={"Accept": "application/json", "User-Agent": "redox-rotator/0.1"},
        transport=transport,
        cookies=_NoCookies(),
        follow_redirects=False,
    )


def path_segment(value: str) -> str:
    """``value`` percent-encoded as one path segment (an id can never add a path)."""
    return quote(value, safe="")


def is_transient_status(status: int) -> bool:
    """408 and 5xx: the IdP may answer differently if asked again (429 is separate)."""
    return status == 408 or status >= 500


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float | None = None,
    write: bool = False,
) -> Reply:
    """One HTTP exchange; timeouts and connection errors raise IdpUnavailable. A ``write``
    (a secret created or revoked) is fenced by the running rotation's lease; every exchange
    stops at the run's deadline (see :mod:`worker.guard`), a trickled reply included."""
    if write:
        guard.before_write(what)
    else:
        guard.check_time(what)
    read = timeout if timeout is not None else (http.timeout.read or 10.0)
    connect = min(read, http.timeout.connect or 5.0)
    total = connect + 2 * read  # send the request, wait for the reply, read it
    extra: dict[str, Any] = {
        "timeout": httpx.Timeout(guard.call_seconds(read), connect=guard.call_seconds(connect))
    }
    try:
        with http.stream(
            method,
            url,
            headers=dict(headers or {}),
            json=json_body,
            data=dict(form) if form is not None else None,
            content=content,
            follow_redirects=False,
            **extra,
        ) as reply:
            body = guard.read_reply(
                reply,
                seconds=total,
                max_bytes=MAX_REPLY_BYTES,
                too_big=lambda: SecretSourceError(
                    f"{what}: reply larger than {MAX_REPLY_BYTES // 1024} KiB"
                ),
                too_slow=lambda: IdpUnavailable(f"{what}: reply too slow"),
            )
            return Reply(reply.status_code, reply.headers, body)
    except httpx.TimeoutException:
        raise IdpUnavailable(f"{what}: timed out") from None
    except httpx.TransportError as exc:
        raise IdpUnavailable(f"{what}: {type(exc).__name__}") from None
    except httpx.DecodingError:
        raise SecretSourceError(f"{what}: reply body cannot be decoded") from None


def short(text: object, *, scrub: Iterable[str] = (), limit: int = 200) -> str:
    """``text`` safe for a message: one line, ``scrub`` values and secret shapes redacted,
    at most ``limit`` characters."""
    secrets = [secret for secret in scrub if secret]
    value = str(text)
    for secret in secrets:
        value = value.replace(secret, REDACTED)
    value = " ".join(value.split())
    for secret in secrets:
        value = value.replace(secret, REDACTED)
    value = redact_text(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def clean_oauth_description(text: object, *, scrub: Iterable[str] = ()) -> str:
    """An OAuth ``error_description`` shortened for a message: Entra's ``AADSTSnnnn:
    sentence`` is kept, its ``Trace ID`` / ``Correlation ID`` / ``Timestamp`` dropped."""
    value = str(text)
    match = _TRACE_MARKERS.search(value)
    if match is not None:
        value = value[: match.start()]
    return short(value, scrub=scrub)


def oauth_error(
    data: Any, *, scrub: Iterable[str] = ()
) -> tuple[str | None, str | None, str | None]:
    """``(error, description, code)`` from an OAuth error reply, each shortened and
    redacted; ``code`` is Entra's ``AADSTSnnnn`` (from ``error_codes`` or the description)."""
    if not isinstance(data, dict):
        return None, None, None
    scrub = [value for value in scrub if value]
    raw_error, raw_description = data.get("error"), data.get("error_description")
    error = short(raw_error, scrub=scrub, limit=80) if isinstance(raw_error, str) else None
    description = None
    if isinstance(raw_description, str):
        description = clean_oauth_description(raw_description, scrub=scrub)
    code = None
    codes = data.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        code = f"AADSTS{codes[0]}"
    elif description and (match := _AADSTS.match(description)):
        code = match.group(0)
    return error or None, description or None, code


def require_client_id(client_id: str | None, idp: str) -> str:
    """The credential's ``clientId`` (the IdP app to manage); SecretSourceError if none."""
    if not client_id:
        raise SecretSourceError(f"{idp}: the credential has no clientId, so no app to manage")
    return client_id


@dataclass(frozen=True, repr=False)
class CertificateAssertion:
    """A certificate client assertion (RFC 7523 ``private_key_jwt``, as Entra documents it):
    RS256, header ``x5t`` (SHA-1) and ``x5t#S256`` (SHA-256) thumbprints of the DER
    certificate; claims ``aud`` = token URL, ``iss`` = ``sub`` = client id, ``jti``,
    ``nbf`` = ``iat`` = now, ``exp`` = now + 5 minutes."""

    TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    LIFETIME = 300

    key: rsa.RSAPrivateKey
    thumbprints: dict[str, str]

    @classmethod
    def load(cls, path: Path, *, setting: str) -> CertificateAssertion:
        """From a PEM holding the RSA private key and its certificate (ConfigError naming
        ``setting`` otherwise)."""
        try:
            pem = path.read_bytes()
        except OSError:
            raise ConfigError(f"{setting}: cannot read {path}") from None
        try:
            key = load_pem_private_key(pem, password=None)
            certificates = x509.load_pem_x509_certificates(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigError(
                f"{setting}: {path} must be a PEM file with an unencrypted private key and "
                "its certificate"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{setting}: the private key must be RSA (the assertion is RS256)")
        public = key.public_key().public_numbers()
        for certificate in certificates:
            cert_key = certificate.public_key()
            if isinstance(cert_key, rsa.RSAPublicKey) and cert_key.public_numbers() == public:
                if certificate.not_valid_after_utc < datetime.now(UTC):
                    log.warning("client certificate has expired", path=str(path))
                # x5t is defined as the SHA-1 thumbprint: it names the certificate only.
                sha1 = hashes.SHA1()  # noqa: S303
                return cls(
                    key,
                    {
                        "x5t": _b64url(certificate.fingerprint(sha1)),
                        "x5t#S256": _b64url(certificate.fingerprint(hashes.SHA256())),
                    },
                )
        raise ConfigError(f"{setting}: no certificate in {path} matches its private key")

    def sign(self, client_id: str, audience: str) -> str:
        """A fresh assertion for one token request to ``audience`` (the token URL)."""
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + self.LIFETIME,
        }
        headers = {"typ": "JWT", **self.thumbprints}
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# -- retries ----------------------------------------------------------------------------


class _WaitJitterOrRetryAfter:
    """Full-jitter exponential wait, replaced by the IdP's Retry-After when it gave one."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._jitter = wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, IdpUnavailable) and exc.retry_after is not None:
            return float(max(exc.retry_after, 0.0))
        return float(self._jitter(state))


def call_with_retry(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], T],
    *,
    retry_if: Callable[[IdpUnavailable], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn``, retrying IdpUnavailable (those ``retry_if`` accepts) within ``policy``;
    the last error is re-raised as is."""

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, IdpUnavailable) and (retry_if is None or retry_if(exc))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "idp call retried",
            call=what,
            attempt=state.attempt_number,
            status=getattr(exc, "status", None),
            error=type(exc).__name__ if exc else None,
            wait_seconds=round(state.upcoming_sleep, 3),
        )

    retrying = Retrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_seconds),
        wait=_WaitJitterOrRetryAfter(policy.backoff_initial, policy.backoff_max),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)
