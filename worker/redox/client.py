"""The Redox Platform API client: one pooled ``httpx.Client`` per process, classified errors.

Every call goes through the shared rate limiter (``pacer``), carries a cached bearer token
(one refresh on a 401, then the 401 is permanent), reads at most ``MAX_REPLY_BYTES``, and
maps the reply onto the error tree in :mod:`worker.errors`. Idempotent calls (GET, PATCH,
DELETE) are retried with the tenacity policy; ``create_auth_credential`` is not, because a
repeated POST makes a duplicate: the rotation workflow looks up by name before it retries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.cookiejar import CookieJar
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode

import httpx
from pydantic import SecretStr

from config.settings import RedoxSettings, RetrySettings
from worker import guard
from worker.errors import (
    BadRedoxResponse,
    RateLimited,
    RedoxAuthFailed,
    RedoxNotFound,
    RedoxRejected,
    RedoxUnavailable,
)
from worker.logging import redact_text
from worker.redox.logs import PAGE_SIZE, SEARCH_FIELDS, LogPage, parse_log_page
from worker.redox.models import (
    AuthCredential,
    Destination,
    Environment,
    NewCredential,
    parse_payload,
    pick_list,
    pick_object,
    validate_model,
)
from worker.redox.retry import call_with_retry, retry_after_seconds
from worker.redox.status import StatusClass, classify_status
from worker.redox.token import TokenProvider

__all__ = ["CallObserver", "Pacer", "RedoxClient"]

#: What a call reads of a 2xx reply: the ``payload`` object, nothing, or the whole document.
Reply = Literal["payload", "none", "document"]


def _seg(value: str) -> str:
    """An id as one URL path segment: percent-encoded, so ``x/../y`` stays one segment and
    never reaches another resource (``/`` included)."""
    return quote(value, safe="")


#: Largest reply we read; a credential call never needs more (Redox's own cap is 10+ MB).
MAX_REPLY_BYTES = 4 * 1024 * 1024
#: The calls that change something in Redox: each attempt is fenced by the run's lease.
WRITES = frozenset({"patch_destination", "create_credential", "delete_credential"})

#: Called after every HTTP exchange with (call kind, status or None, seconds).
CallObserver = Callable[[str, int | None, float], None]


class Pacer(Protocol):
    """The shared Redox rate limiter as the client sees it."""

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        ...

    def throttled(self, retry_after: float | None, limit: str | None = None) -> None:
        """Redox answered 429 (``limit``: its X-RateLimit-Limit): slow every worker down."""
        ...


class _NoCookies(CookieJar):
    """The Platform API needs no cookies, so none are kept (a cookie one reply set is never
    replayed on another call), and httpx skips parsing every reply's headers into a jar."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Keep nothing."""


class RedoxClient:
    """Typed methods for the Platform API calls a rotation needs."""

    def __init__(
        self,
        redox: RedoxSettings,
        retry: RetrySettings,
        *,
        pacer: Pacer | None = None,
        observer: CallObserver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base = redox.base_url
        self._retry = retry
        self._pacer = pacer
        self._observer = observer
        self._timeouts = httpx.Timeout(
            connect=redox.connect_timeout,
            read=redox.read_timeout,
            write=redox.write_timeout,
            pool=redox.pool_timeout,
        )
        # The most one exchange may take, a reply trickled a byte at a time included.
        self._call_seconds = redox.connect_timeout + redox.write_timeout + redox.read_timeout
        self._http = httpx.Client(
            timeout=self._timeouts,
            limits=httpx.Limits(
                max_connections=redox.max_connections,
                max_keepalive_connections=redox.max_connections,
            ),
            headers={"Accept": "application/json", "User-Agent": "redox-rotator/0.1"},
            transport=transport,
            cookies=_NoCookies(),
            follow_redirects=False,
        )
        self.tokens = TokenProvider(
            redox, self._http, before_request=self._pace, on_throttled=self._throttled
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- destinations -------------------------------------------------------------------

    def get_destination(self, destination_id: str) -> Destination:
        """GET /v1/destinations/{id}."""
        what = f"GET destination {destination_id}"
        payload = self._retried(
            "get_destination", "GET", f"/v1/destinations/{_seg(destination_id)}"
        )
        return validate_model(Destination, pick_object(payload, ("destination",), what), what)

    def list_destinations(self, environment_id: str) -> list[Destination]:
        """GET /v1/environments/{id}/destinations."""
        what = f"list destinations of {environment_id}"
        path = f"/v1/environments/{_seg(environment_id)}/destinations"
        payload = self._retried("list_destinations", "GET", path)
        return [
            validate_model(Destination, item, what)
            for item in pick_list(payload, "destinations", what)
        ]

    def update_destination(self, destination_id: str, *, auth_credential: str) -> Destination:
        """PATCH /v1/destinations/{id} with ``{"authCredential": ...}`` only (idempotent)."""
        what = f"PATCH destination {destination_id}"
        payload = self._retried(
            "patch_destination",
            "PATCH",
            f"/v1/destinations/{_seg(destination_id)}",
            body={"authCredential": auth_credential},
        )
        return validate_model(Destination, pick_object(payload, ("destination",), what), what)

    def update_verification_token(self, destination_id: str, token: SecretStr) -> None:
        """PATCH /v1/destinations/{id} with ``{"verificationToken": ...}`` only (idempotent).
        The reply is not read beyond its status: Redox does not echo the token [U]."""
        self._retried(
            "patch_destination",
            "PATCH",
            f"/v1/destinations/{_seg(destination_id)}",
            body={"verificationToken": token.get_secret_value()},
            reply="none",
        )

    # -- auth credentials ---------------------------------------------------------------

    def list_auth_credentials(
        self, environment_id: str, *, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[AuthCredential]:
        """GET /v1/environments/{id}/authcredentials; with ``where``, only the raw items it
        accepts are validated and returned (an environment can hold thousands)."""
        what = f"list auth credentials of {environment_id}"
        path = f"/v1/environments/{_seg(environment_id)}/authcredentials"
        payload = self._retried("list_credentials", "GET", path)
        key = "credentials" if "credentials" in payload else "authCredentials"
        items = pick_list(payload, key, what)
        if where is not None:
            # Filtering skips validation of the rest: check the fields the filter reads, or a
            # garbled list would look like "not there yet" and a retried issue would POST twice.
            for item in items:
                if not isinstance(item.get("id"), str | int) or not isinstance(
                    item.get("name"), str | None
                ):
                    raise BadRedoxResponse(f"{what}: an item has no valid id/name")
            items = [item for item in items if where(item)]
        return [validate_model(AuthCredential, item, what) for item in items]

    def get_auth_credential(self, credential_id: str) -> AuthCredential:
        """GET /v1/authcredentials/{id} (path inferred, see redox-api.md §3)."""
        what = f"GET auth credential {credential_id}"
        path = f"/v1/authcredentials/{_seg(credential_id)}"
        payload = self._retried("get_credential", "GET", path)
        item = pick_object(payload, ("credential", "authCredential"), what)
        return validate_model(AuthCredential, item, what)

    def create_auth_credential(
        self, credential: NewCredential, allowed_fields: tuple[str, ...]
    ) -> AuthCredential:
        """POST /v1/authcredentials, once (no retry: a repeated POST makes a duplicate)."""
        what = f"create auth credential {credential.name}"
        body = credential.body(allowed_fields)
        payload = self._once("create_credential", "POST", "/v1/authcredentials", body, detail=False)
        item = pick_object(payload, ("credential", "authCredential"), what)
        return validate_model(AuthCredential, item, what)

    def delete_auth_credential(self, credential_id: str) -> None:
        """DELETE /v1/authcredentials/{id}; refused by Redox while a destination uses it."""
        self._retried(
            "delete_credential",
            "DELETE",
            f"/v1/authcredentials/{_seg(credential_id)}",
            reply="none",
        )

    def list_auth_strategies(self) -> dict[str, tuple[str, ...]]:
        """GET /v1/authcredentials/strategies -> strategy name -> its available fields."""
        what = "list auth strategies"
        payload = self._retried("list_strategies", "GET", "/v1/authcredentials/strategies")
        strategies = payload.get("strategies")
        result: dict[str, tuple[str, ...]] = {}
        if isinstance(strategies, dict):
            for name, spec in strategies.items():
                fields = spec.get("availableFields") if isinstance(spec, dict) else None
                if isinstance(fields, list):
                    result[str(name)] = tuple(str(field) for field in fields)
        if not result:
            raise BadRedoxResponse(f"{what}: payload.strategies has no availableFields")
        return result

    def list_environments(self, organization_id: int) -> list[Environment]:
        """GET /v1/organizations/{id}/environments."""
        what = f"list environments of organization {organization_id}"
        path = f"/v1/organizations/{_seg(str(organization_id))}/environments"
        payload = self._retried("list_environments", "GET", path)
        return [
            validate_model(Environment, item, what)
            for item in pick_list(payload, "environments", what)
        ]

    # -- logs ---------------------------------------------------------------------------

    def search_logs(
        self,
        environment_id: str,
        filters: dict[str, str],
        *,
        cursor: str | None = None,
        count: int = PAGE_SIZE,
    ) -> LogPage:
        """POST /v1/environments/{id}/logs/search/metadata: one page of matching logs
        (documented single-string fields only; read tolerantly, see :mod:`.logs`)."""
        unknown = sorted(set(filters) - SEARCH_FIELDS)
        if unknown or not all(isinstance(v, str) for v in filters.values()):
            raise ValueError(f"log search takes documented string fields only, not {unknown}")
        query = {"_count": str(min(max(count, 1), PAGE_SIZE))}
        if cursor is not None:
            query["_cursor"] = cursor
        path = f"/v1/environments/{_seg(environment_id)}/logs/search/metadata?{urlencode(query)}"
        what = f"search logs of {environment_id}"
        data = self._retried("search_logs", "POST", path, dict(filters), reply="document")
        return parse_log_page(data, what)

    # -- transport ----------------------------------------------------------------------

    def _retried(
        self,
        kind: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        reply: Reply = "payload",
    ) -> dict[str, Any]:
        return call_with_retry(
            self._retry, kind, lambda: self._once(kind, method, path, body, reply=reply)
        )

    def _once(
        self,
        kind: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        reply: Reply = "payload",
        detail: bool = True,
    ) -> dict[str, Any]:
        """One logical request: at most two HTTP exchanges (a 401 refreshes the token once)."""
        what = f"{method} {path}"
        for refreshed in (False, True):
            token = self.tokens.token()
            status, raw, headers = self._exchange(kind, method, path, body, token)
            if status == 401 and not refreshed:
                self.tokens.invalidate(token)
                continue
            return self._interpret(what, status, raw, headers, reply=reply, detail=detail)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pace(self) -> None:
        if self._pacer is not None:
            self._pacer.acquire()

    def _throttled(self, retry_after: float | None, limit: str | None = None) -> None:
        if self._pacer is not None:
            self._pacer.throttled(retry_after, limit)

    def _exchange(
        self, kind: str, method: str, path: str, body: dict[str, Any] | None, token: str
    ) -> tuple[int, bytes, httpx.Headers]:
        what = f"{method} {path}"
        self._pace()
        # After the limiter's wait, right before sending: the run's deadline, and for a
        # write its lease (a worker replaced while it waited must not write).
        if kind in WRITES:
            guard.before_write(what)
        else:
            guard.check_time(what)
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with self._http.stream(
                method, self._base + path, json=body, headers=headers, timeout=self._timeout()
            ) as reply:
                raw = guard.read_reply(
                    reply,
                    seconds=self._call_seconds,
                    max_bytes=MAX_REPLY_BYTES,
                    too_big=lambda: BadRedoxResponse(
                        f"{what}: reply larger than {MAX_REPLY_BYTES // 1024} KiB"
                    ),
                    too_slow=lambda: RedoxUnavailable(f"{what}: reply too slow"),
                )
                status, reply_headers = reply.status_code, reply.headers
        except httpx.TimeoutException:
            self._observe(kind, None, started)
            raise RedoxUnavailable(f"{what}: timed out") from None
        except httpx.TransportError as exc:
            self._observe(kind, None, started)
            raise RedoxUnavailable(f"{what}: {type(exc).__name__}") from None
        except httpx.DecodingError:
            self._observe(kind, None, started)
            raise BadRedoxResponse(f"{what}: reply body cannot be decoded") from None
        except (RedoxUnavailable, BadRedoxResponse):
            self._observe(kind, None, started)
            raise
        self._observe(kind, status, started)
        return status, raw, reply_headers

    def _timeout(self) -> httpx.Timeout:
        """The client's timeouts, none longer than what is left of the run."""
        return httpx.Timeout(
            connect=guard.call_seconds(self._timeouts.connect or 5.0),
            read=guard.call_seconds(self._timeouts.read or 20.0),
            write=guard.call_seconds(self._timeouts.write or 10.0),
            pool=guard.call_seconds(self._timeouts.pool or 10.0),
        )

    def _observe(self, kind: str, status: int | None, started: float) -> None:
        if self._observer is not None:
            self._observer(kind, status, time.perf_counter() - started)

    def _interpret(
        self,
        what: str,
        status: int,
        raw: bytes,
        headers: httpx.Headers,
        *,
        reply: Reply,
        detail: bool,
    ) -> dict[str, Any]:
        kind = classify_status(status)
        if kind is StatusClass.OK:
            if reply == "none":
                return {}
            try:
                data = json.loads(raw)
            except ValueError:
                media = headers.get("content-type", "unknown type").split(";")[0]
                raise BadRedoxResponse(f"{what}: reply is not JSON ({media})") from None
            if reply == "document":
                if not isinstance(data, dict):
                    raise BadRedoxResponse(f"{what}: reply is not a JSON object")
                return data
            return parse_payload(data, what)
        reason = _error_detail(raw) if detail else ""
        suffix = f": {reason}" if reason else ""
        if kind is StatusClass.RATE_LIMITED:
            retry_after = retry_after_seconds(headers.get("retry-after"))
            self._throttled(retry_after, headers.get("x-ratelimit-limit"))
            raise RateLimited(f"{what}: rate limited (429)", retry_after=retry_after)
        if kind is StatusClass.TRANSIENT:
            raise RedoxUnavailable(f"{what}: Redox answered {status}", status=status)
        if kind is StatusClass.AUTH:
            raise RedoxAuthFailed(f"{what}: 401 after a token refresh{suffix}", status=status)
        if kind is StatusClass.NOT_FOUND:
            raise RedoxNotFound(f"{what}: not found (404){suffix}", status=status)
        if kind is StatusClass.REJECTED:
            raise RedoxRejected(f"{what}: Redox answered {status}{suffix}", status=status)
        raise BadRedoxResponse(f"{what}: unexpected status {status}")


def _error_detail(raw: bytes) -> str:
    """A short, redacted reason from a Redox error body (never the body itself)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    message: Any = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message")
        message = message or data.get("message") or data.get("error_description")
    if not isinstance(message, str):
        return ""
    return redact_text(" ".join(message.split()))[:160]
