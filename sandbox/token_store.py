"""The receiver's token store: where a destination's receiver reads the verification tokens
it accepts (an AWS Secrets Manager secret, in tests moto's server).

A real receiver reads the secret's ``AWSCURRENT`` value and, while a rotation hands a new
token over, its ``AWSPENDING`` value, and caches them for a while: a token written to the store
is accepted only once the receiver has read it again. :class:`TokenStore` does the same for one
destination, over real HTTP with boto3 (off the event loop), with dummy AWS credentials: the
sandbox only talks to a loopback endpoint and never signs in anywhere real.

:func:`check_token` is the receiver's decision for one delivery. No token value ever leaves
this module except to the comparison: errors and views name no value.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from sandbox.oauth_request import is_loopback

__all__ = [
    "INVALID_TOKEN",
    "StoreSettings",
    "StoreTokens",
    "TokenStore",
    "TokenStoreUnavailable",
    "check_token",
]

#: The error a delivery gets when the receiver refuses its ``verification-token`` header.
INVALID_TOKEN: dict[str, Any] = {
    "status": 401,
    "error": "invalid_verification_token",
    "error_description": "the receiver does not accept the destination's verification token",
}
MAX_REFRESH_SECONDS = 86_400.0
_KEYS = {"endpoint_url", "secret_id", "region", "refresh_seconds", "accept_pending"}
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
#: Dummy credentials: moto accepts any, and no real credential is ever sent to the endpoint.
_DUMMY_KEY = "testing"


class TokenStoreUnavailable(Exception):
    """The store could not be read; the message names the cause, never a value."""


@dataclass(frozen=True)
class StoreSettings:
    """Where the receiver reads its tokens and how it treats them."""

    endpoint_url: str
    secret_id: str
    region: str = "us-east-1"
    refresh_seconds: float = 5.0
    accept_pending: bool = True

    @classmethod
    def from_body(cls, data: dict[str, Any]) -> StoreSettings:
        """Settings from a control request body (ValueError naming the bad field)."""
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(f"unknown token store setting(s): {', '.join(unknown)}")
        url = data.get("endpoint_url")
        if not isinstance(url, str) or not is_loopback(url):
            raise ValueError("endpoint_url must be an http(s) URL on a loopback address")
        secret_id = data.get("secret_id")
        if not isinstance(secret_id, str) or not 1 <= len(secret_id) <= 2048:
            raise ValueError("secret_id must be a string of 1 to 2048 characters")
        region = data.get("region", cls.region)
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            raise ValueError("region must be an AWS region such as us-east-1")
        refresh = data.get("refresh_seconds", cls.refresh_seconds)
        if (
            isinstance(refresh, bool)
            or not isinstance(refresh, int | float)
            or not math.isfinite(refresh)
            or not 0 <= refresh <= MAX_REFRESH_SECONDS
        ):
            raise ValueError(f"refresh_seconds must be a number from 0 to {MAX_REFRESH_SECONDS:g}")
        accept_pending = data.get("accept_pending", cls.accept_pending)
        if not isinstance(accept_pending, bool):
            raise ValueError("accept_pending must be a boolean")
        return cls(url, secret_id, region, float(refresh), accept_pending)


@dataclass(frozen=True)
class StoreTokens:
    """What one read of the store found (``pending`` None: no AWSPENDING, or not read)."""

    current: str | None
    pending: str | None


def _same(presented: bytes, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(presented, stored.encode())


def check_token(presented: str | None, tokens: StoreTokens, *, accept_pending: bool) -> bool:
    """True when the receiver accepts ``presented`` (both stages compared, in constant time)."""
    if not presented:
        return False
    value = presented.encode()
    current = _same(value, tokens.current)
    pending = _same(value, tokens.pending)
    return current or (accept_pending and pending)


class TokenStore:
    """One destination's receiver: its store settings, the cached tokens, read counters.

    The cache lasts ``refresh_seconds`` from the end of a successful read; a failed read is
    not cached (the next delivery tries again) and leaves the previous values unused.
    """

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.reads = 0
        self.read_failures = 0
        self.last_read_error: str | None = None
        self._tokens: StoreTokens | None = None
        self._read_at = 0.0
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def tokens(self) -> StoreTokens:
        """The cached tokens, read anew once ``refresh_seconds`` have passed.

        Raises :class:`TokenStoreUnavailable` when a due read fails.
        """
        async with self._lock:
            fresh = time.monotonic() - self._read_at < self.settings.refresh_seconds
            if self._tokens is not None and fresh:
                return self._tokens
            self.reads += 1
            try:
                tokens = await asyncio.to_thread(self._read)
            except TokenStoreUnavailable as exc:
                self.read_failures += 1
                self.last_read_error = str(exc)
                self._tokens = None
                raise
            self._tokens, self._read_at = tokens, time.monotonic()
            self.last_read_error = None
            return tokens

    def view(self) -> dict[str, Any]:
        """Settings and read counters (no token value)."""
        tokens = self._tokens
        return {
            "endpoint_url": self.settings.endpoint_url,
            "secret_id": self.settings.secret_id,
            "region": self.settings.region,
            "refresh_seconds": self.settings.refresh_seconds,
            "accept_pending": self.settings.accept_pending,
            "reads": self.reads,
            "read_failures": self.read_failures,
            "last_read_error": self.last_read_error,
            "cached": tokens is not None,
            "cache_age_seconds": None if tokens is None else time.monotonic() - self._read_at,
            "has_current": tokens is not None and tokens.current is not None,
            "has_pending": tokens is not None and tokens.pending is not None,
        }

    # --- in a worker thread ---------------------------------------------------------------

    def _read(self) -> StoreTokens:
        # botocore is imported here, in the worker thread: importing it costs a noticeable
        # fraction of a second that sandboxes without a token store should not pay.
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            current = self._stage("AWSCURRENT")
            if current is None:
                raise TokenStoreUnavailable("the secret has no AWSCURRENT version")
            pending = self._stage("AWSPENDING") if self.settings.accept_pending else None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise TokenStoreUnavailable(f"the store refused the read ({code})") from None
        except BotoCoreError as exc:
            raise TokenStoreUnavailable(
                f"the store could not be reached ({type(exc).__name__})"
            ) from None
        return StoreTokens(current, pending)

    def _stage(self, stage: str) -> str | None:
        """The value labelled ``stage``; None when no version carries it."""
        from botocore.exceptions import ClientError

        client = self._boto_client()
        try:
            reply = client.get_secret_value(SecretId=self.settings.secret_id, VersionStage=stage)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        value = reply.get("SecretString")
        if value is None and isinstance(reply.get("SecretBinary"), bytes):
            value = reply["SecretBinary"].decode(errors="replace")
        return value if isinstance(value, str) else None

    def _boto_client(self) -> Any:
        if self._client is None:
            import boto3  # deferred with botocore, see _read
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "secretsmanager",
                endpoint_url=self.settings.endpoint_url,
                region_name=self.settings.region,
                aws_access_key_id=_DUMMY_KEY,
                aws_secret_access_key=_DUMMY_KEY,
                config=Config(
                    connect_timeout=2,
                    read_timeout=5,
                    retries={"max_attempts": 1, "mode": "standard"},
                ),
            )
        return self._client
