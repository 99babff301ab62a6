"""Access tokens for the Platform API: a signed JWT client assertion, cached per process.

Per redox-api.md §1: POST form-encoded to the token URL with a JWT signed RS384 (ES384 for
an EC key) whose header carries ``kid``; ``iss`` = ``sub`` = client id, ``aud`` = token URL,
``iat`` (five seconds back, for clock skew), ``exp`` = iat + 300, random ``jti``. Tokens
last five minutes; one token is shared by every thread of the process until shortly
before it expires.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from config.settings import RedoxSettings
from worker import guard
from worker.errors import (
    BadRedoxResponse,
    ConfigError,
    RateLimited,
    RedoxAuthFailed,
    RedoxUnavailable,
)
from worker.logging import get_logger
from worker.redox.retry import retry_after_seconds
from worker.redox.status import StatusClass, classify_status

__all__ = ["TokenProvider", "build_assertion"]

log = get_logger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300
DEFAULT_TOKEN_LIFETIME = 300.0
#: Largest token reply we read (a token reply is well under 2 KiB).
MAX_TOKEN_REPLY_BYTES = 64 * 1024
#: A cached token is not used in its last seconds (it could expire on the way to Redox).
EXPIRY_SAFETY_SECONDS = 5.0


#: ``iat`` is set this many seconds in the past: Redox refuses an ``iat`` in its future
#: and allows 10 s of skew, so a host clock a few seconds fast still gets a token.
CLOCK_SKEW_SECONDS = 5


def build_assertion(settings: RedoxSettings, private_key: Any, now: float | None = None) -> str:
    """The signed client assertion JWT for one token request."""
    issued = int(time.time() if now is None else now) - CLOCK_SKEW_SECONDS
    algorithm = "ES384" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "RS384"
    claims = {
        "iss": settings.client_id,
        "sub": settings.client_id,
        "aud": settings.token_url,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
        "jti": secrets.token_urlsafe(24),
    }
    return jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": settings.key_id})


class TokenProvider:
    """Fetches and caches the Platform API bearer token; thread-safe.

    ``before_request`` is called before every token request (the shared rate limiter:
    Redox counts token requests too), ``on_throttled`` when the token endpoint answers 429;
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        settings: RedoxSettings,
        http: httpx.Client,
        *,
        before_request: Callable[[], None] | None = None,
        on_throttled: Callable[[float | None, str | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._http = http
        self._before_request = before_request
        self._on_throttled = on_throttled
        self._clock = clock
        self._lock = threading.Lock()  # the cached token; never held across I/O or a wait
        self._refreshing = threading.Lock()  # one refresh at a time
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._private_key: Any = None
        #: Tokens fetched by this process (benchmarks check it is ~1 per 5 minutes).
        self.fetched = 0

    def _key(self) -> Any:
        if self._private_key is None:
            path = self._settings.private_key_path
            if path is None:
                raise ConfigError("ROTATOR_REDOX__PRIVATE_KEY_PATH is not set")
            try:
                self._private_key = load_pem_private_key(path.read_bytes(), password=None)
            except (OSError, ValueError, TypeError):
                raise ConfigError(
                    f"ROTATOR_REDOX__PRIVATE_KEY_PATH: cannot load a PEM private key from {path}"
                ) from None
        return self._private_key

    def token(self) -> str:
        """A valid access token, fetched only when the cached one is (nearly) expired.

        One thread refreshes; the others keep using the cached token while it is still
        valid (the refresh starts ``token_refresh_margin`` early), and wait only when there
        is none. No lock is held while the refresh waits for the rate limiter."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            usable = self._token if self._token is not None and now < self._expires_at else None
        if usable is not None and not self._refreshing.acquire(blocking=False):
            return usable  # another thread is refreshing; this one is still good
        if usable is None:
            self._refreshing.acquire()  # nothing to use meanwhile: wait for the refresher
        try:
            with self._lock:  # refreshed while we waited?
                if self._token is not None and self._clock() < self._refresh_at:
                    return self._token
            token, lifetime = self._fetch()  # rate limiter wait and HTTP, no state lock held
            with self._lock:
                now = self._clock()
                margin = min(self._settings.token_refresh_margin, lifetime / 2)
                self._token = token
                self._refresh_at = now + lifetime - margin
                self._expires_at = now + lifetime - min(EXPIRY_SAFETY_SECONDS, lifetime / 4)
            return token
        finally:
            self._refreshing.release()

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after a 401 (only if no other thread already replaced it)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        if self._before_request is not None:
            self._before_request()
        try:
            assertion = build_assertion(self._settings, self._key())
        except jwt.PyJWTError as exc:  # e.g. an EC key on the wrong curve for ES384
            raise ConfigError(
                f"ROTATOR_REDOX__PRIVATE_KEY_PATH: cannot sign with it: {exc}"
            ) from None
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        guard.check_time("token request")
        settings = self._settings
        total = settings.connect_timeout + settings.write_timeout + settings.read_timeout
        try:
            with self._http.stream(
                "POST",
                settings.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=httpx.Timeout(
                    guard.call_seconds(settings.read_timeout),
                    connect=guard.call_seconds(settings.connect_timeout),
                ),
            ) as reply:
                raw = guard.read_reply(
                    reply,
                    seconds=total,
                    max_bytes=MAX_TOKEN_REPLY_BYTES,
                    too_big=lambda: BadRedoxResponse("token endpoint reply is too large"),
                    too_slow=lambda: RedoxUnavailable("token endpoint reply too slow"),
                )
                status, headers = reply.status_code, reply.headers
        except httpx.TimeoutException:
            raise RedoxUnavailable("token request timed out") from None
        except httpx.TransportError as exc:
            raise RedoxUnavailable(f"token request failed: {type(exc).__name__}") from None
        except httpx.DecodingError:
            raise BadRedoxResponse("token endpoint reply cannot be decoded") from None
        kind = classify_status(status)
        if kind is StatusClass.RATE_LIMITED:
            retry_after = retry_after_seconds(headers.get("retry-after"))
            if self._on_throttled is not None:
                self._on_throttled(retry_after, headers.get("x-ratelimit-limit"))
            raise RateLimited("token request rate limited (429)", retry_after=retry_after)
        if kind is StatusClass.TRANSIENT:
            raise RedoxUnavailable(f"token endpoint answered {status}", status=status)
        if kind is not StatusClass.OK:
            raise RedoxAuthFailed(
                f"token request refused ({status}): {_oauth_reason(raw)}", status=status
            )
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadRedoxResponse("token endpoint reply is not JSON") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise BadRedoxResponse("token endpoint reply has no access_token")
        lifetime = data.get("expires_in", DEFAULT_TOKEN_LIFETIME)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        self.fetched += 1
        log.info("redox token fetched", expires_in=lifetime)
        return token, float(lifetime)


def _oauth_reason(raw: bytes) -> str:
    """Redox's OAuth ``error_description`` (a fixed, non-secret sentence), if any."""
    try:
        data = json.loads(raw)
    except ValueError:
        return "no details"
    if isinstance(data, dict):
        reason = data.get("error_description") or data.get("error")
        if isinstance(reason, str) and reason:
            return reason[:160]
    return "bad aud, alg, jti or iat (Redox gave no description)"
